// A tiny supervisor for the chaos run: one OS process per service unit (`tsx stack/service-main.ts
// <unit>`, or another script such as the ws-gateway stand-in), its JSON log appended to a file,
// readiness taken from a log line ("services started" for service units), and
// a restart when a process exits on its own (what systemd / Kubernetes would do, e.g. after a
// fatal exit 70 while the broker was away). Kills on purpose go through `kill9`, which restarts the
// process at once and returns how long the new one took to start. The run's directory is on every
// command line (`--chaos-run=<dir>`, ignored by service-main) so a later run can recognise leftovers.
import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, writeFileSync, type WriteStream } from 'node:fs';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { ROOT } from '../runtime/paths.ts';

export interface SupervisedProcess {
  name: string;
  /** Times the process exited without being asked to (and was restarted). */
  crashes: number;
  kills: number;
  pid(): number | undefined;
  start(): void;
  /** Resolves with ms from the last start to its "services started" line. */
  waitReady(timeoutMs?: number): Promise<number>;
  /** SIGKILL, restart at once, wait for readiness: ms from the kill to "services started". */
  kill9(): Promise<number>;
  /** SIGTERM (a graceful drain, as a deployment's rolling restart does), then start again: the exit code and ms until ready again. */
  restart(graceMs?: number): Promise<{ exitCode: number | null; ms: number }>;
  /** SIGTERM (graceful drain), SIGKILL after a grace period; no restart. */
  stop(graceMs?: number): Promise<void>;
  /** SIGSTOP: the process stays, frozen (a long GC pause, a stalled VM), until `resume`. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
}

export interface SuperviseOptions {
  /** Service unit to run (default: the name). */
  service?: string;
  /** Another script instead of service-main (path under the repo, then its arguments). */
  script?: string[];
  /** Log line that means "ready" (default: the runtime's "services started"). */
  ready?: string;
  env: NodeJS.ProcessEnv;
  dir: string;
  onLine?: (name: string, line: string) => void;
  say?: (l: string) => void;
}

export function supervise(name: string, opts: SuperviseOptions): SupervisedProcess {
  const ready = opts.ready ?? '"services started"';
  const args = opts.script ? [join(ROOT, opts.script[0]!), ...opts.script.slice(1)] : [join(ROOT, 'stack/service-main.ts'), opts.service ?? name];
  const log: WriteStream = createWriteStream(join(opts.dir, 'logs', `${name}.log`), { flags: 'a' });
  let child: ChildProcess | null = null;
  let startedAt = 0;
  let readyAt = 0;
  let stopping = false;
  let expectExit = false;
  const self: SupervisedProcess = {
    name,
    crashes: 0,
    kills: 0,
    pid: () => child?.pid,
    start() {
      startedAt = Date.now();
      readyAt = 0;
      expectExit = false;
      const c = spawn(process.execPath, ['--import', 'tsx', ...args, `--chaos-run=${opts.dir}`], { env: opts.env, stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
      if (c.pid) writeFileSync(join(opts.dir, `svc-${name}.pid`), String(c.pid));
      let buf = '';
      c.stdout!.on('data', (d: Buffer) => {
        log.write(d);
        buf += d.toString();
        let i: number;
        while ((i = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, i);
          buf = buf.slice(i + 1);
          if (!readyAt && line.includes(ready)) readyAt = Date.now();
          opts.onLine?.(name, line);
        }
      });
      c.stderr!.on('data', (d: Buffer) => log.write(d));
      c.once('exit', (code, signal) => {
        log.write(`--- exit code=${code} signal=${signal}\n`);
        if (child !== c) return;
        child = null;
        if (stopping || expectExit) return;
        self.crashes++;
        opts.say?.(`${name} exited by itself (code ${code}, signal ${signal}); restarting it`);
        setTimeout(() => {
          if (!stopping && child === null) self.start();
        }, 500);
      });
      child = c;
    },
    async waitReady(timeoutMs = 180_000) {
      const until = Date.now() + timeoutMs;
      while (!readyAt && Date.now() < until) await sleep(25);
      if (!readyAt) throw new Error(`${name} did not start within ${timeoutMs} ms (log: ${join(opts.dir, 'logs', `${name}.log`)})`);
      return readyAt - startedAt;
    },
    async kill9() {
      const c = child;
      const t0 = Date.now();
      if (c) {
        expectExit = true;
        const gone = new Promise((r) => c.once('exit', r));
        c.kill('SIGKILL');
        await gone;
      }
      self.kills++;
      self.start();
      await self.waitReady();
      return readyAt - t0;
    },
    async restart(graceMs = 15_000) {
      const c = child;
      const t0 = Date.now();
      let exitCode: number | null = null;
      if (c && c.exitCode === null && c.signalCode === null) {
        expectExit = true;
        const gone = new Promise<number | null>((r) => c.once('exit', (code) => r(code)));
        c.kill('SIGTERM');
        const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
        exitCode = await gone;
        clearTimeout(t);
      }
      self.start();
      await self.waitReady();
      return { exitCode, ms: readyAt - t0 };
    },
    async stop(graceMs = 15_000) {
      stopping = true;
      const c = child;
      if (c && c.exitCode === null && c.signalCode === null) {
        const gone = new Promise((r) => c.once('exit', r));
        c.kill('SIGTERM');
        c.kill('SIGCONT'); // a paused process handles its SIGTERM only once it runs
        const t = setTimeout(() => c.kill('SIGKILL'), graceMs);
        await gone;
        clearTimeout(t);
      }
      child = null;
      if (!log.writableEnded) await new Promise<void>((r) => log.end(() => r()));
    },
    pause() {
      child?.kill('SIGSTOP');
    },
    resume() {
      child?.kill('SIGCONT');
    },
  };
  return self;
}
