// What a long run samples of the processes it supervises: resident memory from /proc (Linux), bytes
// of files under a directory, and the error-level lines of JSON logs (pino: level 50 error, 60 fatal).
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
