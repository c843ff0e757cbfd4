// Real servers for the package tests: `tollgate serve` (embedded store or a shared backend) and
// redis-server, each on a free 127.0.0.1 port, in a temporary directory removed at stop().
import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync, existsSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

/** The tollgate binary: $TOLLGATE_BIN, else the repository's build/tollgate. */
export function tollgateBin(): string {
  const fromEnv = process.env["TOLLGATE_BIN"];
  if (fromEnv) return fromEnv;
  const guess = resolve(import.meta.dirname, "../../../../../build/tollgate");
  if (!existsSync(guess)) throw new Error(`no tollgate binary: set TOLLGATE_BIN (looked at ${guess})`);
  return guess;
}

export interface Running {
  url: string;
  port: number;
  dir: string;
  stop(): Promise<void>;
  /** SIGKILL: no shutdown work at all (durability tests). */
  kill(): Promise<void>;
}

export function freePort(): Promise<number> {
  return new Promise((ok, bad) => {
    const s = createServer();
    s.once("error", bad);
    s.listen(0, "127.0.0.1", () => {
      const a = s.address();
      const port = typeof a === "object" && a ? a.port : 0;
      s.close(() => ok(port));
    });
  });
}

function waitForLine(child: ChildProcess, re: RegExp, what: string, ms = 15000): Promise<RegExpMatchArray> {
  return new Promise((ok, bad) => {
    let seen = "";
    const timer = setTimeout(() => bad(new Error(`${what} did not start within ${ms} ms:\n${seen}`)), ms);
    const onData = (b: Buffer) => {
      seen += b.toString();
      const m = seen.match(re);
      if (m) {
        clearTimeout(timer);
        ok(m);
      }
    };
    child.stdout?.on("data", onData);
    child.stderr?.on("data", onData);
    child.once("exit", (code) => {
      clearTimeout(timer);
      bad(new Error(`${what} exited with ${code}:\n${seen}`));
    });
  });
}

function stopper(child: ChildProcess, dir: string, signal: NodeJS.Signals = "SIGTERM"): () => Promise<void> {
  return async () => {
    if (child.exitCode === null && child.signalCode === null) {
      const gone = new Promise((r) => child.once("exit", r));
      child.kill(signal);
      const t = setTimeout(() => child.kill("SIGKILL"), 5000);
      await gone;
      clearTimeout(t);
    }
    rmSync(dir, { recursive: true, force: true });
  };
}

/** Starts `tollgate serve`; `policies` (YAML) becomes its --config. */
/** `dataDir`: keep the embedded store there (not deleted by stop) instead of a fresh one. */
export async function startTollgate(
  opts: { backend?: string; policies?: string; password?: string; dataDir?: string; args?: string[] } = {},
): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), "tollgate-ts-"));
  const args = ["serve", "--port", "0", "--http-port", "off"];
  if (opts.backend) args.push("--backend", opts.backend);
  else args.push("--data-dir", opts.dataDir ?? join(dir, "data"));
  if (opts.policies !== undefined) {
    writeFileSync(join(dir, "policies.yaml"), opts.policies);
    args.push("--config", join(dir, "policies.yaml"));
  }
  args.push(...(opts.args ?? []));
  const env = { ...process.env };
  if (opts.password !== undefined) env["TOLLGATE_REQUIREPASS"] = opts.password;
  const child = spawn(tollgateBin(), args, { stdio: ["ignore", "pipe", "pipe"], env });
  const m = await waitForLine(child, /tollgate ready on ([\d.]+):(\d+)/, "tollgate serve");
  const port = Number(m[2]);
  return { url: `redis://127.0.0.1:${port}`, port, dir, stop: stopper(child, dir), kill: stopper(child, dir, "SIGKILL") };
}

/**
 * Starts a throwaway redis-server, or returns null when none is installed. Without persistence by
 * default; `fsync: true` gives appendonly with appendfsync always (every write on disk before its
 * reply, as tollgate's embedded store does).
 */
export async function startRedis(opts: { fsync?: boolean } = {}): Promise<Running | null> {
  const bin = ["/usr/bin/redis-server", "/usr/local/bin/redis-server"].find((p) => existsSync(p));
  if (!bin) return null;
  const dir = mkdtempSync(join(tmpdir(), "tollgate-ts-redis-"));
  const port = await freePort();
  const persistence = opts.fsync ? ["--appendonly", "yes", "--appendfsync", "always"] : ["--appendonly", "no"];
  const child = spawn(bin, ["--port", String(port), "--bind", "127.0.0.1", "--save", "", ...persistence, "--dir", dir], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  await waitForLine(child, /Ready to accept connections/, "redis-server");
  return { url: `redis://127.0.0.1:${port}`, port, dir, stop: stopper(child, dir), kill: stopper(child, dir, "SIGKILL") };
}
