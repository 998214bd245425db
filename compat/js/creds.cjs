// compat-js: the AWS SDK for JavaScript v3 Node default chain, unmodified.
// NODE_PATH must point at the node_modules that compat/install populated.
//
// One JSON line per step (PROBE_STEPS, default 1); each step after the first
// waits for a line on stdin. `fresh` is a new fromNodeProviderChain() (what a
// process starting now gets): credentials, the region an STS client resolves,
// and with PROBE_STS_ENDPOINT a GetCallerIdentity signed through the default
// chain. `held` is step 0's provider asked again, as a long-lived client would.
const { fromNodeProviderChain } = require("@aws-sdk/credential-providers");
const { STSClient, GetCallerIdentityCommand } = require("@aws-sdk/client-sts");
const readline = require("readline");
const fs = require("fs");
const path = require("path");

function pkgVersion(name) {
  for (const dir of (process.env.NODE_PATH || "").split(path.delimiter)) {
    try {
      return JSON.parse(fs.readFileSync(path.join(dir, name, "package.json"), "utf8")).version;
    } catch (e) {
      // try the next folder
    }
  }
  return "?";
}

const msg = (e) => (e && (e.name + ": " + e.message)) || String(e);

async function ask(provider) {
  try {
    const c = await provider();
    return {
      akid: c.accessKeyId,
      expiration: c.expiration ? c.expiration.toISOString().replace(/\.\d+Z$/, "Z") : null,
      has_token: !!c.sessionToken,
    };
  } catch (e) {
    return { error: msg(e) };
  }
}

async function fresh() {
  const provider = fromNodeProviderChain();
  const v = await ask(provider);
  try {
    v.region = await new STSClient({}).config.region();
  } catch (e) {
    v.region = null;
    v.region_error = msg(e);
  }
  if (process.env.PROBE_STS_ENDPOINT && !v.error) {
    try {
      const sts = new STSClient({ endpoint: process.env.PROBE_STS_ENDPOINT, region: "us-east-1" });
      v.arn = (await sts.send(new GetCallerIdentityCommand({}))).Arn;
    } catch (e) {
      v.sts_error = msg(e);
    }
  }
  return [v, provider];
}

(async () => {
  const steps = parseInt(process.env.PROBE_STEPS || "1", 10);
  const version = pkgVersion("@aws-sdk/credential-providers");
  const imds = pkgVersion("@smithy/credential-provider-imds");
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  let held = null;
  for (let step = 0; step < steps; step++) {
    if (step > 0 && (await lines.next()).done) break;
    const [f, provider] = await fresh();
    const h = held ? await ask(held) : null;
    held = held || provider;
    console.log(JSON.stringify({
      step,
      version: `@aws-sdk/credential-providers ${version} (@smithy/credential-provider-imds ${imds})`,
      fresh: f,
      held: h,
    }));
  }
  process.exit(0);
})();
