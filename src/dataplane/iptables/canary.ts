// The KUBE-PROXY-CANARY chain (upstream ipt.Monitor): an empty chain in the
// mangle, nat and filter tables. When something flushes the tables (a
// firewall reload, `iptables -t nat -F -X`), the canary goes with them and the
// next poll asks for a full resync. Upstream polls the mangle copy only; kproxy
// polls all three, so a flush of the nat table alone is noticed too.
import { iptables, type IptablesTools } from './apply.js';
import { log as rootLog, type Logger } from '../../util/log.js';

export const CANARY_CHAIN = 'KUBE-PROXY-CANARY';
export const CANARY_TABLES = ['mangle', 'nat', 'filter'] as const;

export class Canary {
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  private readonly log: Logger;

  constructor(
    private readonly tools: IptablesTools,
    log?: Logger,
  ) {
    this.log = log ?? rootLog.child({ component: 'canary', family: tools.family });
  }

  /** Creates the canary chain where it is missing. */
  async ensure(): Promise<void> {
    for (const t of CANARY_TABLES) {
      const r = await iptables(this.tools, ['-t', t, '-N', CANARY_CHAIN], true);
      if (r.code !== 0 && !/exists/i.test(r.stderr)) throw new Error(`cannot create ${CANARY_CHAIN} in ${t}: ${r.stderr.trim()}`);
    }
  }

  /** The tables whose canary is gone. */
  async missing(): Promise<string[]> {
    const out: string[] = [];
    for (const t of CANARY_TABLES) {
      const r = await iptables(this.tools, ['-t', t, '-n', '-L', CANARY_CHAIN], true);
      // Any failure but a busy lock means the chain is gone (the nft backend
      // words it differently from legacy, e.g. "is incompatible").
      if (r.code !== 0 && !/lock|temporarily unavailable/i.test(r.stderr)) out.push(t);
    }
    return out;
  }

  /** Polls every intervalMs; calls onLost when any canary has gone (once per loss: the resync recreates it). */
  start(intervalMs: number, onLost: (tables: string[]) => void): void {
    this.stop();
    this.timer = setInterval(() => {
      if (this.busy) return;
      this.busy = true;
      this.missing()
        .then((m) => {
          if (m.length) {
            this.log.info('iptables canary deleted: tables were flushed, resyncing everything', { tables: m });
            onLost(m);
          }
        })
        .catch((e) => this.log.warn('cannot check the iptables canary', { error: e }))
        .finally(() => (this.busy = false));
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }
}
