// What the broker says about the transactions of some partitions, for a reader that stopped short of
// a partition's end (stack/chaos-events.ts): each partition's offsets (earliest, last stable, high
// watermark), its producers with an open transaction (DescribeProducers), and what the transaction
// coordinator holds for each of them (ListTransactions + DescribeTransactions). A producer whose
// transaction is open on a partition while the coordinator has no such transaction (or does not list
// the partition in it) is a hanging transaction: nothing will ever end it but an admin abort.
// kafkajs has none of these admin calls; the broker's own kafka-clients jar has them. Run with
//   java -cp '<kafka libs>/*' stack/kafka/TxnProbe.java <bootstrap> <topic>/<partition> ...
// Prints one JSON object per line.
import java.util.*;
import java.util.stream.*;
import org.apache.kafka.clients.admin.*;
import org.apache.kafka.common.IsolationLevel;
import org.apache.kafka.common.TopicPartition;

public class TxnProbe {
  static String q(Object s) {
    return s == null ? "null" : "\"" + s.toString().replace("\\", "\\\\").replace("\"", "\\\"") + "\"";
  }

  public static void main(String[] args) throws Exception {
    Properties props = new Properties();
    props.put(AdminClientConfig.BOOTSTRAP_SERVERS_CONFIG, args[0]);
    props.put(AdminClientConfig.REQUEST_TIMEOUT_MS_CONFIG, "15000");
    props.put(AdminClientConfig.DEFAULT_API_TIMEOUT_MS_CONFIG, "20000");
    List<TopicPartition> tps = new ArrayList<>();
    for (int i = 1; i < args.length; i++) {
      int slash = args[i].lastIndexOf('/');
      tps.add(new TopicPartition(args[i].substring(0, slash), Integer.parseInt(args[i].substring(slash + 1))));
    }
    try (Admin admin = Admin.create(props)) {
      Map<TopicPartition, OffsetSpec> earliest = tps.stream().collect(Collectors.toMap(tp -> tp, tp -> OffsetSpec.earliest()));
      Map<TopicPartition, OffsetSpec> latest = tps.stream().collect(Collectors.toMap(tp -> tp, tp -> OffsetSpec.latest()));
      var low = admin.listOffsets(earliest).all().get();
      var high = admin.listOffsets(latest, new ListOffsetsOptions(IsolationLevel.READ_UNCOMMITTED)).all().get();
      var stable = admin.listOffsets(latest, new ListOffsetsOptions(IsolationLevel.READ_COMMITTED)).all().get();
      Set<Long> producerIds = new TreeSet<>();
      var producers = admin.describeProducers(tps).all().get();
      for (TopicPartition tp : tps) {
        StringBuilder ps = new StringBuilder();
        for (ProducerState p : producers.get(tp).activeProducers()) {
          if (p.currentTransactionStartOffset().isPresent()) producerIds.add(p.producerId());
          if (ps.length() > 0) ps.append(',');
          ps.append("{\"producerId\":").append(p.producerId()).append(",\"epoch\":").append(p.producerEpoch())
            .append(",\"lastSequence\":").append(p.lastSequence()).append(",\"lastTimestamp\":").append(p.lastTimestamp())
            .append(",\"coordinatorEpoch\":").append(p.coordinatorEpoch().isPresent() ? p.coordinatorEpoch().getAsInt() : -1)
            .append(",\"openTransactionFrom\":").append(p.currentTransactionStartOffset().isPresent() ? p.currentTransactionStartOffset().getAsLong() : -1).append('}');
        }
        System.out.println("{\"partition\":" + q(tp.topic() + "/" + tp.partition()) + ",\"earliest\":" + low.get(tp).offset() + ",\"lastStable\":" + stable.get(tp).offset()
          + ",\"highWatermark\":" + high.get(tp).offset() + ",\"producers\":[" + ps + "]}");
      }
      // The coordinator's side of every producer with an open transaction on those partitions.
      List<String> ids = admin.listTransactions().all().get().stream().filter(t -> producerIds.contains(t.producerId())).map(TransactionListing::transactionalId).collect(Collectors.toList());
      Set<Long> known = new HashSet<>();
      if (!ids.isEmpty()) {
        for (var e : admin.describeTransactions(ids).all().get().entrySet()) {
          TransactionDescription d = e.getValue();
          known.add(d.producerId());
          String parts = d.topicPartitions().stream().map(tp -> q(tp.topic() + "/" + tp.partition())).collect(Collectors.joining(","));
          System.out.println("{\"transactionalId\":" + q(e.getKey()) + ",\"producerId\":" + d.producerId() + ",\"epoch\":" + d.producerEpoch() + ",\"state\":" + q(d.state())
            + ",\"startMs\":" + (d.transactionStartTimeMs().isPresent() ? d.transactionStartTimeMs().getAsLong() : -1) + ",\"timeoutMs\":" + d.transactionTimeoutMs() + ",\"partitions\":[" + parts + "]}");
        }
      }
      for (long id : producerIds) if (!known.contains(id)) System.out.println("{\"producerId\":" + id + ",\"coordinator\":\"no transactional id holds this producer id\"}");
    }
  }
}
