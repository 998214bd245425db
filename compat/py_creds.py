"""compat-py: the botocore / boto3 default chain, unmodified.

Usage: python py_creds.py botocore|boto3

One JSON line per step (PROBE_STEPS, default 1); each step after the first
waits for a line on stdin. `fresh` is a new session's chain (what a process
starting now gets): credentials, region, and with PROBE_STS_ENDPOINT a signed
GetCallerIdentity made with them. `held` is step 0's credentials object asked
again, as a long-lived client would (botocore refreshes it near expiry)."""
import json
import os
import sys

import botocore
import botocore.session

WHICH = sys.argv[1]
if WHICH == "boto3":
    import boto3

    VERSION = "boto3 %s (botocore %s)" % (boto3.__version__, botocore.__version__)
else:
    VERSION = "botocore " + botocore.__version__


def new_session():
    if WHICH == "boto3":
        return boto3.Session()
    return botocore.session.get_session()


def region_of(s):
    return s.region_name if WHICH == "boto3" else s.get_config_variable("region")


def describe(creds):
    frozen = creds.get_frozen_credentials()
    exp = getattr(creds, "_expiry_time", None)
    return {"akid": frozen.access_key, "source": getattr(creds, "method", None),
            "expiration": exp.strftime("%Y-%m-%dT%H:%M:%SZ") if exp else None,
            "has_token": bool(frozen.token)}


def fresh():
    s = new_session()
    try:
        creds = s.get_credentials()
    except Exception as e:  # noqa: BLE001 - report whatever the SDK raised
        return {"error": "%s: %s" % (type(e).__name__, e)}, None
    if creds is None:
        return {"error": "no credentials (get_credentials() returned None)",
                "region": region_of(s)}, None
    v = describe(creds)
    v["region"] = region_of(s)
    url = os.environ.get("PROBE_STS_ENDPOINT")
    if url:
        try:
            if WHICH == "boto3":
                sts = s.client("sts", endpoint_url=url, region_name="us-east-1")
            else:
                sts = s.create_client("sts", endpoint_url=url, region_name="us-east-1")
            v["arn"] = sts.get_caller_identity()["Arn"]
        except Exception as e:  # noqa: BLE001
            v["sts_error"] = "%s: %s" % (type(e).__name__, e)
    return v, creds


def main():
    held = None
    for step in range(int(os.environ.get("PROBE_STEPS", "1"))):
        if step and not sys.stdin.readline():
            break
        f, creds = fresh()
        h = None
        if held is not None:
            try:
                h = describe(held)
            except Exception as e:  # noqa: BLE001
                h = {"error": "%s: %s" % (type(e).__name__, e)}
        held = held or creds
        print(json.dumps({"step": step, "version": VERSION, "fresh": f, "held": h}), flush=True)


main()
