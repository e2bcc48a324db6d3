// What the broker's metadata cache answers for the leader of a partition that exists but has no
// live leader, as during a single broker's controlled shutdown: "noNode" (a leader to wait for, what
// the transaction coordinator needs to keep a marker queued) or "none" (no such partition, which the
// coordinator takes for a deleted one and skips: KAFKA-20734). Run with the broker's classpath:
//   java -cp '<classpath>' stack/kafka/LeaderlessPartitionProbe.java
// tests/foundation/kafka-broker-fix.test.ts runs it with and without stack/kafka-broker-fix.ts's class.
import java.util.List;
import org.apache.kafka.common.Node;
import org.apache.kafka.common.Uuid;
import org.apache.kafka.common.metadata.FeatureLevelRecord;
import org.apache.kafka.common.metadata.PartitionRecord;
import org.apache.kafka.common.metadata.TopicRecord;
import org.apache.kafka.common.network.ListenerName;
import org.apache.kafka.image.MetadataDelta;
import org.apache.kafka.image.MetadataProvenance;
import org.apache.kafka.metadata.KRaftMetadataCache;
import org.apache.kafka.server.common.KRaftVersion;
import org.apache.kafka.server.common.MetadataVersion;

public class LeaderlessPartitionProbe {
  public static void main(String[] args) {
    Uuid id = Uuid.randomUuid();
    MetadataDelta delta = new MetadataDelta.Builder().build();
    delta.replay(new FeatureLevelRecord().setName(MetadataVersion.FEATURE_NAME).setFeatureLevel(MetadataVersion.latestProduction().featureLevel()));
    delta.replay(new TopicRecord().setName("t").setTopicId(id));
    // Partition 0 of a topic whose only replica (broker 1) is not registered: no live leader.
    delta.replay(new PartitionRecord().setTopicId(id).setPartitionId(0).setReplicas(List.of(1)).setIsr(List.of(1)).setLeader(-1).setLeaderEpoch(1).setPartitionEpoch(1));
    KRaftMetadataCache cache = new KRaftMetadataCache(1, () -> KRaftVersion.KRAFT_VERSION_0);
    cache.setImage(delta.apply(MetadataProvenance.EMPTY));
    var leader = cache.getPartitionLeaderEndpoint("t", 0, ListenerName.normalised("PLAINTEXT"));
    var unknown = cache.getPartitionLeaderEndpoint("t", 1, ListenerName.normalised("PLAINTEXT"));
    System.out.println("leaderless=" + (leader.isEmpty() ? "none" : leader.get().equals(Node.noNode()) ? "noNode" : leader.get()) + " unknown=" + (unknown.isEmpty() ? "none" : unknown.get()));
  }
}
