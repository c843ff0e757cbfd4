#!/usr/bin/env bash
# `npm pack`s every package and installs the tarballs into a scratch project the way a user would
# (npm install <tarballs> plus the peer dependencies from the registry), then imports them and
# type-checks a consumer against their declarations.
set -euo pipefail
cd "$(dirname "$0")/.."
npm run build --workspaces >/dev/null
rm -rf dist-pack && mkdir -p dist-pack
npm pack --workspaces --pack-destination dist-pack >/dev/null
ls dist-pack
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
cp tsconfig.base.json "$scratch/"
cd "$scratch"
npm init -y >/dev/null
npm pkg set type=module
npm install --no-audit --no-fund "$OLDPWD"/dist-pack/*.tgz @ws-kit/core@0.10.1 @ws-kit/rate-limit@0.10.0 \
  typescript@5 @types/node@20 >/dev/null 2>&1
cat > consumer.ts <<'TS'
import { createTollgateBackend, hashKey, type LockBackend, type TollgateCapabilities } from "@tollgate/syncguard";
import { tollgateRateLimiter, tollgatePolicyLimiter } from "@tollgate/ws-kit";
import type { RateLimiter } from "@ws-kit/rate-limit";
const backend: LockBackend<TollgateCapabilities> = createTollgateBackend({ url: "redis://127.0.0.1:1" });
const limiter: RateLimiter = tollgateRateLimiter({ url: "redis://127.0.0.1:1", capacity: 1.5, tokensPerSecond: 0.5 });
void tollgatePolicyLimiter;
console.log(typeof backend.acquire, typeof limiter.consume, hashKey("resource:123"));
process.exit(0);
TS
cat > tsconfig.json <<'TS'
{ "extends": "./tsconfig.base.json", "compilerOptions": { "outDir": "out" }, "include": ["consumer.ts"] }
TS
npx tsc -p tsconfig.json
out=$(node out/consumer.js)
echo "$out"
[ "$out" = "function function e90a28c676a29a3291e2874a" ] || { echo "pack-check: unexpected output"; exit 1; }
echo "pack-check: the tarballs install and work"
