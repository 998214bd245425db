// compat-js: the AWS SDK for JavaScript v3 Node default chain, unmodified.
// NODE_PATH must point at the node_modules that compat/install populated.
const { fromNodeProviderChain } = require("@aws-sdk/credential-providers");

(async () => {
  const provider = fromNodeProviderChain();
  const c = await provider();
  console.log("access_key_id=" + c.accessKeyId);
  console.log("expiration=" + (c.expiration ? c.expiration.toISOString() : ""));
  console.log("has_secret=" + !!c.secretAccessKey + " has_token=" + !!c.sessionToken);
  if (c.$source) console.log("source=" + JSON.stringify(c.$source));
})().catch((e) => {
  console.error("fromNodeProviderChain: " + (e && (e.name + ": " + e.message)));
  process.exit(1);
});
