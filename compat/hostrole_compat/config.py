"""Where things are, and what the matrix is made of: clients, scenarios, the
clients' documented limitations."""
import os
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # compat/
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(ROOT, ".cache")
VENV = os.path.join(CACHE, "venv")
NODE_MODULES = os.path.join(CACHE, "node", "node_modules")
NODE2_MODULES = os.path.join(CACHE, "node2", "node_modules")
GO_BIN = os.path.join(CACHE, "compat-go")
GO1_BIN = os.path.join(CACHE, "compat-go1")
CLI_V2 = "/usr/bin/aws"
TARGET = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
# A prebuilt daemon or aws-config probe can be named here; one named is used
# as it is, and is not built (see needs_build in cli).
HOSTROLE = os.environ.get("HOSTROLE_BIN") or os.path.join(TARGET, "debug", "hostrole")
RUST_PROBE = os.environ.get("HOSTROLE_COMPAT_PROBE") or os.path.join(TARGET, "debug", "examples", "compat_probe")

STEP_TIMEOUT_S = 30  # one client step; each SDK probe bounds its own calls at 15 s
ACCOUNT = "123456789012"
ROLE_A = "arn:aws:iam::%s:role/demo" % ACCOUNT
ROLE_B = "arn:aws:iam::%s:role/other" % ACCOUNT
IMDS_ADDR = "169.254.169.254"
IMDS_ADDR6 = "fd00:ec2::254"
REGION = "eu-west-2"
ZONE = "eu-west-2b"

CLIENTS = ["botocore", "boto3", "awscli-v1", "awscli-v2", "js-v3", "go-v2", "rust",
           "ruby", "go-v1", "js-v2", "php"]
TITLES = {
    "botocore": "botocore", "boto3": "boto3", "awscli-v1": "AWS CLI v1",
    "awscli-v2": "AWS CLI v2", "js-v3": "JS v3", "go-v2": "Go v2", "rust": "Rust (aws-config)",
    "ruby": "Ruby", "go-v1": "Go v1", "js-v2": "JS v2", "php": "PHP (async-aws)",
}
# Clients that cannot be pointed at an endpoint and would ask 169.254.169.254
# on the host's own network: outside the scenarios that run in a network
# namespace, they run in an empty one of their own (see clients.open_session).
ISOLATED = {"php"}
SCENARIOS = [
    ("1", "IMDSv2 required, endpoint from AWS_EC2_METADATA_SERVICE_ENDPOINT"),
    ("2a", "IMDSv1 allowed: the client's default (v2) path"),
    ("2b", "IMDSv1 allowed: client forced onto v1 (token PUT answered 403)"),
    ("3", "default endpoint, no environment: 169.254.169.254:80 in a network namespace"),
    ("4", "--issuer sts at moto: served keys sign sts:GetCallerIdentity"),
    ("5", "region from IMDS (no region configured in the client)"),
    ("6a", "replace: a client that asks again gets the new role"),
    ("6b", "disassociate: a client that asks again fails cleanly with no credentials"),
    ("7", "restart between two fetches of one long-lived client process"),
    ("8", "--issuer roles-anywhere: a certificate exchanged at a verifying fake endpoint"),
    ("9a", "container endpoint: AWS_CONTAINER_CREDENTIALS_FULL_URI and a consumer's token file"),
    ("9b", "container endpoint: a wrong token gets nothing"),
    ("9c", "container endpoint: a revoked token gets nothing"),
    ("9d", "container endpoint: the token in AWS_CONTAINER_AUTHORIZATION_TOKEN"),
    ("10", "IPv6 endpoint mode (AWS_EC2_METADATA_SERVICE_ENDPOINT_MODE=IPv6): [fd00:ec2::254]:80 in a network namespace"),
]

# Limitations of the clients themselves, each asserted (see LIMIT in the
# docstring of cli, and report.limit_or).
LIMITS = {
    ("2b", "rust"): "aws-config is IMDSv2-only by design: no v1 fallback "
                    "(aws-config src/imds/client.rs: \"This client ONLY supports IMDSv2\")",
    ("5", "botocore"): "botocore does not read the region from IMDS; it resolves no region",
    ("5", "boto3"): "boto3 (botocore) does not read the region from IMDS; it resolves no region",
    ("5", "awscli-v1"): "AWS CLI v1 does not read the region from IMDS; it resolves no region",
    ("9a", "awscli-v2"): "AWS CLI v2 2.9 (Debian) reads the token from AWS_CONTAINER_AUTHORIZATION_TOKEN "
                         "only, not from a file (awscli/botocore/credentials.py: ENV_VAR_AUTH_TOKEN, "
                         "no AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)",
    ("9a", "go-v2"): "aws-sdk-go-v2 1.17 (Debian) reads the token from AWS_CONTAINER_AUTHORIZATION_TOKEN "
                     "only, not from a file (config/env_config.go: awsContainerPProviderAuthorizationEnvVar, "
                     "no AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE)",
}

RUBY_PORT = ("aws-sdk-core 3.168 (Debian) connects to port 80 whatever port AWS_EC2_METADATA_SERVICE_ENDPOINT "
             "names (aws-sdk-core/instance_profile_credentials.rb:79, :240; fixed upstream in aws-sdk-ruby "
             "PR #2998, 2024), so it cannot reach an endpoint on another port; it fails with no credentials")
RUBY_CONTAINER = ("aws-sdk-core 3.168 uses the container provider only with AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, "
                  "at 169.254.170.2 and with no Authorization header (credential_provider_chain.rb:164, "
                  "ecs_credentials.rb:57-60, :131): it never asks the container endpoint")
PHP_FIXED = ("async-aws/core 1.18 (Debian) asks only http://169.254.169.254 with IMDSv1 GETs: no token PUT, no "
             "endpoint variable, no IPv6 mode, and AWS_EC2_METADATA_DISABLED ignored "
             "(Credentials/InstanceProvider.php:28, :47, :51; Credentials/ChainProvider.php:78); run in a network "
             "namespace of its own, it gets no credentials")
PHP_V1 = ("async-aws/core 1.18 speaks IMDSv1 only (Credentials/InstanceProvider.php:47, :51): "
          "the daemon requires IMDSv2 and answers its GET 401, so it gets no credentials")
PHP_CONTAINER = ("async-aws/core 1.18 reads only AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, with no token "
                 "(Configuration.php:74; Credentials/ContainerProvider.php:23, :40, :48): it never asks "
                 "the container endpoint")
GO1_FILE = ("aws-sdk-go 1.44 (Debian) reads the token from AWS_CONTAINER_AUTHORIZATION_TOKEN only, not from a "
            "file (aws/defaults/defaults.go:191): it sends no token and gets 401")
for _key in ("1", "2a", "2b", "4", "6a", "6b", "7", "8"):
    LIMITS[(_key, "ruby")] = RUBY_PORT
    LIMITS[(_key, "php")] = PHP_FIXED
for _key in ("9a", "9b", "9c", "9d"):
    LIMITS[(_key, "ruby")] = RUBY_CONTAINER
    LIMITS[(_key, "php")] = PHP_CONTAINER
LIMITS[("3", "php")] = PHP_V1
LIMITS[("10", "php")] = PHP_FIXED
LIMITS[("5", "ruby")] = RUBY_PORT + "; nor does it read the region from IMDS (plugins/regional_endpoint.rb:99-105)"
LIMITS[("5", "php")] = PHP_FIXED + "; its region falls back to us-east-1 (Configuration.php:18, :60, :79)"
LIMITS[("5", "go-v1")] = ("aws-sdk-go 1.44 reads the region only from AWS_REGION and the config file "
                          "(aws/session/env_config.go:216-218, :326-333); it resolves no region")
LIMITS[("5", "js-v2")] = ("aws-sdk 2.x reads the region only from AWS_REGION or AMAZON_REGION and, with "
                          "AWS_SDK_LOAD_CONFIG, the config file (lib/node_loader.js:118-140); it resolves no region")
LIMITS[("9a", "go-v1")] = GO1_FILE


def log(msg):
    print(msg, file=sys.stderr, flush=True)
