"""Where things are, and what the matrix is made of: clients, scenarios, the
clients' documented limitations."""
import os
import sys

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # compat/
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(ROOT, ".cache")
VENV = os.path.join(CACHE, "venv")
NODE_MODULES = os.path.join(CACHE, "node", "node_modules")
GO_BIN = os.path.join(CACHE, "compat-go")
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

CLIENTS = ["botocore", "boto3", "awscli-v1", "awscli-v2", "js-v3", "go-v2", "rust"]
TITLES = {
    "botocore": "botocore", "boto3": "boto3", "awscli-v1": "AWS CLI v1",
    "awscli-v2": "AWS CLI v2", "js-v3": "JS v3", "go-v2": "Go v2", "rust": "Rust (aws-config)",
}
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


def log(msg):
    print(msg, file=sys.stderr, flush=True)
