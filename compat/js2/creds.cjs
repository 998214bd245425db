// compat-js2: the AWS SDK for JavaScript v2 (npm `aws-sdk` 2.x) Node default
// chain, unmodified. NODE_PATH must point at the node_modules that
// `npm ci` populated from compat/js2/package-lock.json (.cache/node2).
// The SDK prints an end-of-support notice on stderr when loaded; stdout is
// only the JSON lines.
//
// One JSON line per step (PROBE_STEPS, default 1); each step after the first
// waits for a line on stdin. `fresh` is a new AWS.CredentialProviderChain()
// with AWS.CredentialProviderChain.defaultProviders, resolved with
// resolvePromise() (what a process starting now gets): credentials, the
// region an AWS.STS client resolves (v2 never asks IMDS for it), and with
// PROBE_STS_ENDPOINT a GetCallerIdentity signed through the default chain.
// `held` is step 0's credentials asked again as a long-lived client's
// AWS.Config.getCredentials does: the AWS.Credentials object step 0's chain
// resolved, with get() (which refreshes it only when needsRefresh()), or,
// if step 0 found none, the same chain object's resolvePromise() again.
// Every step (fresh, then held) is bounded at 15 s in all, fresh at 12 s.
const AWS = require("aws-sdk");
const readline = require("readline");

// A step is bounded at 15 s in all; fresh gets the first 12, so held always
// has some left.
const STEP_MS = 15000;
const FRESH_MS = 12000;
const msg = (e) => (e && ((e.code || e.name) + ": " + e.message)) || String(e);
const iso = (d) => (d instanceof Date && !isNaN(d) ? d.toISOString().replace(/\.\d+Z$/, "Z") : null);

// The SDK can throw outside any promise (e.g. a token file ending in a
// newline: Node refuses the Authorization header, ERR_INVALID_CHAR): such an
// error fails the calls in flight instead of crashing the probe.
const inFlight = new Set();
process.on("uncaughtException", (e) => {
  if (inFlight.size === 0) console.error("compat-js2: uncaught:", e);
  for (const reject of inFlight) reject(e);
});

// Races promise against the step's deadline (the SDK call may keep running).
function bounded(deadline, what, promise) {
  let timer, fail;
  const timeout = new Promise((_, reject) => {
    fail = reject;
    inFlight.add(fail);
    timer = setTimeout(() => reject(new Error(`${what}: timed out (the step is bounded at ${STEP_MS / 1000} s)`)),
      Math.max(0, deadline - Date.now()));
  });
  return Promise.race([promise, timeout]).finally(() => {
    clearTimeout(timer);
    inFlight.delete(fail);
  });
}

function shape(c) {
  return {
    akid: c.accessKeyId,
    expiration: iso(c.expireTime),
    has_token: !!c.sessionToken,
    source: (c.constructor && c.constructor.name) || null,
  };
}

async function fresh(deadline) {
  const chain = new AWS.CredentialProviderChain();
  let v;
  let creds = null;
  try {
    creds = await bounded(deadline, "resolvePromise", chain.resolvePromise());
    v = shape(creds);
  } catch (e) {
    v = { error: msg(e) };
  }
  try {
    v.region = new AWS.STS().config.region || null;
  } catch (e) {
    v.region = null;
    v.region_error = msg(e);
  }
  if (process.env.PROBE_STS_ENDPOINT && !v.error) {
    try {
      const sts = new AWS.STS({ endpoint: process.env.PROBE_STS_ENDPOINT, region: "us-east-1" });
      v.arn = (await bounded(deadline, "GetCallerIdentity", sts.getCallerIdentity({}).promise())).Arn;
    } catch (e) {
      v.sts_error = msg(e);
    }
  }
  return [v, { chain, creds }];
}

async function askHeld(held, deadline) {
  try {
    if (held.creds) {
      await bounded(deadline, "get", held.creds.getPromise());
    } else {
      held.creds = await bounded(deadline, "resolvePromise", held.chain.resolvePromise());
    }
    return shape(held.creds);
  } catch (e) {
    return { error: msg(e) };
  }
}

(async () => {
  const steps = parseInt(process.env.PROBE_STEPS || "1", 10) || 1;
  const lines = readline.createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  let held = null;
  for (let step = 0; step < steps; step++) {
    if (step > 0 && (await lines.next()).done) break;
    let f, h = null;
    try {
      const start = Date.now();
      let provider;
      [f, provider] = await fresh(start + FRESH_MS);
      if (held) h = await askHeld(held, start + STEP_MS);
      held = held || provider;
    } catch (e) {
      f = f || { error: msg(e) };
    }
    console.log(JSON.stringify({
      step,
      version: `aws-sdk (JS v2) ${AWS.VERSION}`,
      fresh: f,
      held: h,
    }));
  }
  process.exit(0);
})().catch((e) => {
  console.error("compat-js2:", e);
  process.exit(1);
});
