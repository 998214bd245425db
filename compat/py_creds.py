"""compat-py: botocore / boto3 default chain, unmodified.
Usage: python py_creds.py botocore|boto3"""
import sys

import botocore

if sys.argv[1] == "boto3":
    import boto3
    print("version=%s (botocore %s)" % (boto3.__version__, botocore.__version__))
    creds = boto3.Session().get_credentials()
else:
    import botocore.session
    print("version=" + botocore.__version__)
    creds = botocore.session.get_session().get_credentials()
if creds is None:
    sys.exit("no credentials found")
frozen = creds.get_frozen_credentials()
print("access_key_id=" + frozen.access_key)
print("source=" + str(getattr(creds, "method", "")))
exp = getattr(creds, "_expiry_time", None)
print("expiration=" + (exp.strftime("%Y-%m-%dT%H:%M:%SZ") if exp else ""))
print("has_secret=%s has_token=%s" % (bool(frozen.secret_key), bool(frozen.token)))
