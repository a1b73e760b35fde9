// CPU time of running processes from /proc/<pid>/stat (Linux), for benchmarks that compare what work costs.
import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';

/** Reads the CPU seconds (user + system, all threads) the given processes have used so far, together. */
export class ProcessCpu {
  readonly #pids: readonly number[];
  readonly #tick = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;

  constructor(pids: readonly number[]) {
    this.#pids = pids;
  }

  async seconds(): Promise<number> {
    const { user, system } = await this.split();
    return user + system;
  }

  /** The CPU seconds so far in user space and in the kernel (system calls, and the network stack's work). */
  async split(): Promise<{ user: number; system: number }> {
    const each = await Promise.all(
      this.#pids.map(async (pid) => {
        const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
        // Fields after the command name (which may hold spaces): state is field 3, utime 14, stime 15.
        const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
        return { user: Number(fields[11]) / this.#tick, system: Number(fields[12]) / this.#tick };
      }),
    );
    return {
      user: each.reduce((a, b) => a + b.user, 0),
      system: each.reduce((a, b) => a + b.system, 0),
    };
  }

  /**
   * Waits (up to `maxMs`) until the processes use under `busyPerProcess` of a CPU, so start-up work (loading,
   * compiling, first lists) is not counted, then returns what they use per second while idle, over `windowMs`.
   */
  async settleIdle(signal: AbortSignal, busyPerProcess = 0.04, windowMs = 2000, maxMs = 15_000): Promise<number> {
    let last = await this.seconds();
    for (const until = performance.now() + maxMs; performance.now() < until;) {
      await delay(500, undefined, { signal });
      const now = await this.seconds();
      const busy = (now - last) / 0.5;
      last = now;
      if (busy < busyPerProcess * this.#pids.length) break;
    }
    const from = await this.seconds();
    await delay(windowMs, undefined, { signal });
    return ((await this.seconds()) - from) / (windowMs / 1000);
  }
}
