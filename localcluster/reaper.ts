// Kills the processes a parent started when that parent dies, even by SIGKILL: the parent sends
// {pid} over IPC for every child it starts; when the IPC channel closes without {done: true},
// every known process group gets SIGTERM, then SIGKILL.
const pids = new Set<number>();
let done = false;

function killAll(signal: NodeJS.Signals): void {
  for (const pid of pids) {
    try {
      process.kill(-pid, signal);
    } catch {
      try {
        process.kill(pid, signal);
      } catch {
        // already gone
      }
    }
  }
}

process.on('message', (msg: { pid?: number; forget?: number; done?: boolean }) => {
  if (msg.pid) pids.add(msg.pid);
  if (msg.forget) pids.delete(msg.forget);
  if (msg.done) done = true;
});
process.on('disconnect', () => {
  if (done || pids.size === 0) process.exit(0);
  killAll('SIGTERM');
  setTimeout(() => {
    killAll('SIGKILL');
    process.exit(0);
  }, 3000);
});
