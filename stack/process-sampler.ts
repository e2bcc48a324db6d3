// What a long run samples of the processes it supervises: resident memory and CPU time from /proc
// (Linux), bytes of files under a directory, and the error-level lines of JSON logs (pino: level 50
// error, 60 fatal).
import { execFileSync } from 'node:child_process';
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join } from 'node:path';

/** Resident set size of a process in bytes, or null when it is gone. */
export function rssBytes(pid: number | undefined): number | null {
  if (!pid) return null;
  try {
    const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : null;
  } catch {
    return null;
  }
}

/** Bytes of the files under `dir`, in its subdirectories whose name passes `take`. */
export function dirBytes(dir: string, take: (name: string) => boolean = () => true): number {
  if (!existsSync(dir)) return 0;
  let total = 0;
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      try {
        if (e.isDirectory()) walk(p);
        else if (e.isFile()) total += statSync(p).size;
      } catch {
        /* removed meanwhile (a log segment rolled) */
      }
    }
  };
  for (const e of readdirSync(dir, { withFileTypes: true })) if (e.isDirectory() && take(e.name)) walk(join(dir, e.name));
  return total;
}

/** Error and fatal lines of the pino JSON logs in `dir` (one file per process: `<process>.log`). */
export function errorLines(dir: string, max = 500): Array<{ process: string; line: string }> {
  const out: Array<{ process: string; line: string }> = [];
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.log')).sort()) {
    for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) {
      if (/"level":(50|60)[,}]/.test(line)) {
        out.push({ process: f.slice(0, -4), line: line.slice(0, 2000) });
        if (out.length >= max) return out;
      }
    }
  }
  return out;
}

/** The fields of /proc/<pid>/stat a sampler needs (proc(5)); CPU times in clock ticks. */
export interface ProcStat {
  comm: string;
  ppid: number;
  utime: number;
  stime: number;
}

/**
 * Parse one /proc/<pid>/stat line. The command name is in parentheses and may itself contain
 * spaces and parentheses, so the fields are counted from the last ')'; utime and stime are fields
 * 14 and 15 and cover every thread of the process (not its waited-for children).
 */
export function parseProcStat(text: string): ProcStat | null {
  const open = text.indexOf('(');
  const close = text.lastIndexOf(')');
  if (open < 0 || close < open) return null;
  const rest = text.slice(close + 2).trim().split(/\s+/);
  // rest[0] is field 3 (state): field k is rest[k - 3].
  const num = (field: number) => Number(rest[field - 3]);
  const st = { comm: text.slice(open + 1, close), ppid: num(4), utime: num(14), stime: num(15) };
  return Number.isFinite(st.ppid) && Number.isFinite(st.utime) && Number.isFinite(st.stime) ? st : null;
}

/** /proc/<pid>/stat of a process, or null when it is gone (or not Linux). */
export function procStat(pid: number): ProcStat | null {
  try {
    return parseProcStat(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return null;
  }
}

/** User + system CPU time of a process in clock ticks, or null when it is gone. */
export function cpuTicks(pid: number): number | null {
  const st = procStat(pid);
  return st ? st.utime + st.stime : null;
}

let ticksPerSecond: number | undefined;
/** Clock ticks per second of the /proc CPU times (`getconf CLK_TCK`; 100 on Linux when it cannot be asked). */
export function clockTicksPerSecond(): number {
  if (ticksPerSecond === undefined) {
    try {
      const n = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
      ticksPerSecond = Number.isInteger(n) && n > 0 ? n : 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

/** Every process now running: pid → its stat. */
export function allProcesses(): Map<number, ProcStat> {
  const out = new Map<number, ProcStat>();
  let names: string[];
  try {
    names = readdirSync('/proc');
  } catch {
    return out;
  }
  for (const n of names) {
    if (!/^\d+$/.test(n)) continue;
    const st = procStat(Number(n));
    if (st) out.set(Number(n), st);
  }
  return out;
}

/** `root` and its descendants among `procs` (a wrapper such as tsx or a JVM launcher and what it started). */
export function processTree(root: number, procs: Map<number, ProcStat> = allProcesses()): number[] {
  if (!procs.has(root)) return [];
  const children = new Map<number, number[]>();
  for (const [pid, st] of procs) (children.get(st.ppid) ?? children.set(st.ppid, []).get(st.ppid)!).push(pid);
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out.sort((a, b) => a - b);
}
