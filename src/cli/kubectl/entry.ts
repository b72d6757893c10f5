// The `kubectl-keyward` program (bin/kubectl-keyward starts it on keyward's Node 24):
// kubectl finds it on PATH and passes it the arguments after `kubectl keyward`.
import { runPlugin } from "./plugin.ts";

process.exitCode = await runPlugin(process.argv.slice(2), {
  out: (t) => process.stdout.write(t),
  err: (t) => process.stderr.write(t),
  env: process.env,
  stdoutIsTTY: process.stdout.isTTY,
});
