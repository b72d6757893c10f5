// A fake pool worker for the pool's unit tests: records what it is sent and
// answers through the callback the test gives it.
import type { PoolWorker, ToWorker } from "./protocol.ts";

export class FakeWorker implements PoolWorker {
  readonly sent: ToWorker[] = [];
  readonly killed: NodeJS.Signals[] = [];
  connected = true;
  readonly process: PoolWorker["process"];
  private readonly onSend: (m: ToWorker) => void;

  constructor(pid: number, onSend: (m: ToWorker) => void = () => undefined) {
    this.onSend = onSend;
    this.process = { pid, kill: (signal) => this.killed.push(signal) };
  }

  send(m: ToWorker): boolean {
    this.sent.push(m);
    this.onSend(m);
    return true;
  }

  isConnected(): boolean {
    return this.connected;
  }
}
