// CPU time of every process the bench's signals pass through, from /proc (user + system, all
// threads), so a figure per signal covers the whole machine's work for it and not only the order
// manager's: the broker, the schema registry, PostgreSQL, RabbitMQ and the simulator pay for every
// request the order manager makes. Processes are grouped by service; a group's time is the sum of
// its processes' times.
//
// PostgreSQL: the backends of the bench's own database are attributed to it (pg_stat_activity);
// the server's shared processes (postmaster, WAL writer, checkpointer, background writer,
// autovacuum) are a group of their own, as they also serve every other database on the machine.
// The broker, the registry and RabbitMQ are shared with anything else running on the machine: the
// bench assumes it is alone (docs/performance.md).
import { readFileSync } from 'node:fs';
import { allProcesses, clockTicksPerSecond, cpuTicks, processTree, type ProcStat } from '../process-sampler.ts';
import { sql, type DatabasePool } from '../../runtime/db.ts';
import { z } from 'zod';

/** Service → the pids whose CPU time it is. */
export type CpuGroups = Record<string, number[]>;

/** CPU ticks per pid per group at one moment (`at`: Date.now()). */
export interface CpuSnapshot {
  at: number;
  ticks: Record<string, Map<number, number>>;
}

export function cpuSnapshot(groups: CpuGroups, at = Date.now()): CpuSnapshot {
  const ticks: CpuSnapshot['ticks'] = {};
  for (const [name, pids] of Object.entries(groups)) {
    const m = new Map<number, number>();
    for (const pid of pids) {
      const t = cpuTicks(pid);
      if (t !== null) m.set(pid, t);
    }
    ticks[name] = m;
  }
  return { at, ticks };
}

/**
 * CPU milliseconds per group between two snapshots. A process that appeared in between counts from
 * zero (it started inside the window); one that exited in between is lost (its time cannot be read
 * any more): the group lists are fixed before a window, so neither happens unless a process dies.
 */
export function cpuDeltaMs(a: CpuSnapshot, b: CpuSnapshot, hz = clockTicksPerSecond()): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [name, after] of Object.entries(b.ticks)) {
    const before = a.ticks[name] ?? new Map<number, number>();
    let t = 0;
    for (const [pid, v] of after) t += v - (before.get(pid) ?? 0);
    out[name] = Math.round((t * 1000) / hz);
  }
  return out;
}

/**
 * Snapshots every `everyMs` (reading /proc only: a few files per sample), so a window can end at
 * the moment its last event arrived rather than when the driver noticed the run had drained.
 */
export function startCpuSampler(groups: CpuGroups, everyMs = 200): { first: CpuSnapshot; atOrAfter(t: number): CpuSnapshot; stop(): CpuSnapshot } {
  const samples: CpuSnapshot[] = [cpuSnapshot(groups)];
  const timer = setInterval(() => samples.push(cpuSnapshot(groups)), everyMs);
  return {
    first: samples[0]!,
    atOrAfter: (t) => samples.find((s) => s.at >= t) ?? samples[samples.length - 1]!,
    stop: () => {
      clearInterval(timer);
      const last = cpuSnapshot(groups);
      samples.push(last);
      return last;
    },
  };
}

const pgActivity = z.object({ pid: z.number(), datname: z.string().nullable(), backend_type: z.string().nullable() });

export interface GroupSources {
  /** Roots of the bench's own children by service (each with its descendants). */
  children: Record<string, number[]>;
  /** The pid files of the local stack's broker and schema registry. */
  kafkaPidFile: string;
  registryPidFile: string;
  /** A pool on any database of the server (to read pg_stat_activity) and the bench's database name. */
  pg: DatabasePool;
  benchDatabase: string;
}

const readPid = (file: string): number | null => {
  try {
    const n = Number(readFileSync(file, 'utf8').trim());
    return Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
};

/** The processes of each service now, the bench driver (this process) included. */
export async function resolveGroups(src: GroupSources): Promise<CpuGroups> {
  const procs = allProcesses();
  const tree = (root: number | null) => (root === null ? [] : processTree(root, procs));
  const groups: CpuGroups = {};
  for (const [name, roots] of Object.entries(src.children)) groups[name] = roots.flatMap((r) => tree(r));
  groups['kafka-broker'] = tree(readPid(src.kafkaPidFile));
  groups['schema-registry'] = tree(readPid(src.registryPidFile));
  // The RabbitMQ node is the Erlang VM (beam.smp) and the helpers it started.
  groups.rabbitmq = [...procs].filter(([, st]) => st.comm === 'beam.smp' && procs.get(st.ppid)?.comm !== 'beam.smp').flatMap(([pid]) => tree(pid));
  const act = await src.pg.any(sql.type(pgActivity)`SELECT pid, datname, backend_type FROM pg_stat_activity`);
  groups['postgresql (bench database backends)'] = act.filter((a) => a.datname === src.benchDatabase && a.backend_type === 'client backend').map((a) => a.pid);
  const aux = act.filter((a) => a.backend_type !== null && a.backend_type !== 'client backend').map((a) => a.pid);
  const postmaster = aux.map((p) => procs.get(p)?.ppid).find((p): p is number => p !== undefined && isPostgres(procs.get(p)));
  groups['postgresql (shared processes)'] = [...new Set([...(postmaster ? [postmaster] : []), ...aux])].sort((a, b) => a - b);
  groups['bench driver'] = [process.pid];
  return groups;
}

const isPostgres = (st: ProcStat | undefined) => st !== undefined && /postgres/.test(st.comm);

/** The CPU and RSS group of one process of a split order manager (BENCH_OM_PROCESSES), named by its units. */
const PART_PREFIX = 'order-manager[';
export const orderManagerPart = (units: readonly string[]) => `${PART_PREFIX}${units.join('+')}]`;

/**
 * Services the signals pass through: everything but the driver, which stands in for the model
 * service and the events' consumer, and but one process of a split order manager
 * (`orderManagerPart`), which its `order-manager` sum already counts.
 */
export const isService = (group: string) => group !== 'bench driver' && !group.startsWith(PART_PREFIX);
