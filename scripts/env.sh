# Sourced by the other scripts: where the project's tools live. Safe to source twice.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export ROOT
case ":$PATH:" in
  *":$ROOT/tools/node_modules/.bin:"*) ;;
  *) export PATH="$ROOT/tools/node_modules/.bin:${CARGO_HOME:-$HOME/.cargo}/bin:$PATH" ;;
esac
# Test tools must never download a browser: the machine's Chromium is used instead.
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
export npm_config_fund=false npm_config_audit=false npm_config_update_notifier=false
