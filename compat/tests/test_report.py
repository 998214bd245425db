"""The judging helpers and the written matrix (compat/hostrole_compat/report.py)."""
import datetime
import os
import sys
import tempfile
import unittest
from unittest import mock

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from hostrole_compat import report  # noqa: E402
from hostrole_compat.config import CLIENTS, LIMITS, SCENARIOS  # noqa: E402
from hostrole_compat.report import Cell, expired, got_served, last_error_line, limit_or  # noqa: E402


def iso(delta_s, suffix="Z"):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=delta_s)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + suffix


REF = {"role": "demo", "akid": "ASIAEXAMPLE00000WXYZ", "token": "t", "expiration": iso(3600)}


class Expired(unittest.TestCase):
    def test_no_expiry_is_not_expired(self):
        self.assertFalse(expired(None))
        self.assertFalse(expired(""))

    def test_past_and_future(self):
        self.assertTrue(expired("2000-01-01T00:00:00Z"))
        self.assertTrue(expired(iso(-5)))
        self.assertFalse(expired(iso(3600)))

    def test_unparsable_counts_as_expired(self):
        self.assertTrue(expired("tomorrow"))
        self.assertTrue(expired("2030-13-01T00:00:00Z"))

    def test_reads_the_first_19_characters_as_utc(self):
        # an offset or fractional seconds after them do not change the verdict
        self.assertFalse(expired(iso(3600, "+00:00")))
        self.assertFalse(expired(iso(3600, ".123Z")))
        self.assertTrue(expired(iso(-60, "+00:00")))


class GotServed(unittest.TestCase):
    def test_the_served_credentials_pass(self):
        v = {"akid": REF["akid"], "has_token": True, "expiration": iso(3600), "source": "iam-role"}
        self.assertIsNone(got_served(v, REF))
        self.assertIsNone(got_served({"akid": REF["akid"], "source": "EC2RoleProvider"}, REF))
        self.assertIsNone(got_served({"akid": REF["akid"]}, REF))

    def test_an_error_is_the_reason(self):
        self.assertEqual(got_served({"error": "Unable to locate credentials", "akid": REF["akid"]}, REF),
                         "Unable to locate credentials")

    def test_another_key(self):
        self.assertEqual(got_served({"akid": "ASIAOTHER"}, REF),
                         "got AccessKeyId ASIAOTHER, endpoint serves %s" % REF["akid"])
        self.assertEqual(got_served({}, REF), "got AccessKeyId None, endpoint serves %s" % REF["akid"])

    def test_cli_v1_last_four(self):
        self.assertIsNone(got_served({"akid_last4": "WXYZ", "source": "iam-role"}, REF))
        self.assertIn("got AccessKeyId None", got_served({"akid_last4": "ABCD", "source": "iam-role"}, REF))
        # a full key id that differs is not rescued by matching last 4
        self.assertIn("got AccessKeyId ASIAOTHER0000000WXYZ",
                      got_served({"akid": "ASIAOTHER0000000WXYZ", "akid_last4": "WXYZ"}, REF))

    def test_no_session_token(self):
        self.assertEqual(got_served({"akid": REF["akid"], "has_token": False}, REF), "no session token")

    def test_expired_credentials(self):
        exp = iso(-60)
        self.assertEqual(got_served({"akid": REF["akid"], "expiration": exp}, REF),
                         "holds expired credentials (%s)" % exp)

    def test_a_source_other_than_the_instance_role(self):
        self.assertEqual(got_served({"akid": REF["akid"], "source": "env"}, REF),
                         "credential source 'env', not the instance role")


class LastErrorLine(unittest.TestCase):
    def test_the_last_line_that_reads_like_an_error(self):
        text = "starting\nError: first\n  Unable to locate credentials  \ntraceback tail\n\n"
        self.assertEqual(last_error_line(text), "Unable to locate credentials")
        for word in ("ERROR x", "could not y", "SomeException", "it failed", "role not found"):
            self.assertEqual(last_error_line("a\n%s\nb" % word), word)

    def test_else_the_last_line(self):
        self.assertEqual(last_error_line("one\n two \n\n"), "two")

    def test_no_output(self):
        self.assertEqual(last_error_line(""), "(no output)")
        self.assertEqual(last_error_line(" \n\t\n"), "(no output)")

    def test_cut_at_300(self):
        self.assertEqual(last_error_line("error " + "x" * 500), ("error " + "x" * 500)[:300])
        self.assertEqual(len(last_error_line("y" * 500)), 300)


class LimitOr(unittest.TestCase):
    def test_the_documented_limits(self):
        # the exact set of documented client limitations; changing it changes the matrix
        unreachable = {"1", "2a", "2b", "4", "6a", "6b", "7", "8"}  # Ruby ignores the port, PHP the endpoint
        container = {"9a", "9b", "9c", "9d"}  # neither asks FULL_URI
        expected = {("2b", "rust"), ("5", "botocore"), ("5", "boto3"), ("5", "awscli-v1"),
                    ("9a", "awscli-v2"), ("9a", "go-v2"), ("9a", "go-v1"),
                    ("5", "ruby"), ("5", "php"), ("5", "go-v1"), ("5", "js-v2"), ("3", "php"), ("10", "php")}
        expected |= {(k, c) for k in unreachable | container for c in ("ruby", "php")}
        self.assertEqual(set(LIMITS), expected)
        keys = {k for k, _ in SCENARIOS}
        for scenario, client in LIMITS:
            self.assertIn(scenario, keys)
            self.assertIn(client, CLIENTS)
        self.assertIn("IMDSv2-only", LIMITS[("2b", "rust")])

    def test_limit_when_observed(self):
        for (scenario, client), text in LIMITS.items():
            cell = limit_or(scenario, client, True, "unused", "what it did")
            self.assertEqual((cell.status, cell.detail), ("LIMIT", "%s (what it did)" % text))

    def test_fail_when_not_observed(self):
        cell = limit_or("5", "boto3", False, "resolved region 'eu-west-2'", "unused")
        self.assertEqual((cell.status, cell.detail),
                         ("FAIL", "expected limitation not observed: resolved region 'eu-west-2'"))

    def test_no_limit_without_documentation(self):
        with self.assertRaises(KeyError):
            limit_or("1", "botocore", True, "x", "y")


class FakeMatrix:
    def __init__(self, clients, cells, versions):
        self.clients, self.cells, self.versions = clients, cells, versions


M = FakeMatrix(["botocore", "rust"],
               {("1", "botocore"): Cell("PASS", "got it"), ("1", "rust"): Cell("LIMIT", "by design"),
                ("2a", "botocore"): Cell("FAIL", "no key"), ("2b", "rust"): Cell("ODD", "?")},
               {"botocore": "botocore 1.2.3"})
ROWS = [("1", "first"), ("2a", "second"), ("2b", "third")]
TABLE = """| scenario | botocore | Rust (aws-config) |
|---|---|---|
| 1. first | pass | limit¹ |
| 2a. second | **FAIL** | **not run** |
| 2b. third | **not run** | ? |"""


class Output(unittest.TestCase):
    def test_table(self):
        self.assertEqual(report.table(M, ROWS), TABLE)
        self.assertEqual(report.table(M, []), "| scenario | botocore | Rust (aws-config) |\n|---|---|---|")

    def test_table_of_the_real_layout(self):
        m = FakeMatrix(CLIENTS, {(k, c): Cell("PASS", "") for k, _ in SCENARIOS for c in CLIENTS}, {})
        rows = report.table(m, SCENARIOS).split("\n")
        self.assertEqual(len(rows), 2 + len(SCENARIOS))
        self.assertEqual(rows[0], "| scenario | botocore | boto3 | AWS CLI v1 | AWS CLI v2 | JS v3 | Go v2 "
                                  "| Rust (aws-config) | Ruby | Go v1 | JS v2 | PHP (async-aws) |")
        self.assertEqual(rows[1], "|---|" + "---|" * 11)
        self.assertEqual(rows[3], "| 2a. IMDSv1 allowed: the client's default (v2) path |" + " pass |" * 11)

    def test_write_doc(self):
        with tempfile.TemporaryDirectory() as root:
            os.mkdir(os.path.join(root, "docs"))
            path = os.path.join(root, "docs", "compatibility.md")
            with open(path, "w") as f:
                f.write("old\n")
            with mock.patch.object(report, "ROOT", root):
                report.write_doc(path, M, ROWS, 12.0)
            with open(path, encoding="utf-8") as f:
                text = f.read()
            self.assertEqual(os.listdir(os.path.join(root, "docs")), ["compatibility.md"])  # no .tmp left
        lines = text.split("\n")
        self.assertEqual(lines[0], "# Compatibility matrix")
        self.assertEqual(lines[2], "Generated by `compat/matrix --write docs/compatibility.md`; do not edit by "
                                   "hand. `scripts/test` runs the matrix again and fails if its outcomes or "
                                   "client versions differ from these.")
        self.assertIn("\n\n" + TABLE + "\n\n¹ limit: a documented limitation", text)
        self.assertIn("\n## Clients\n\n- botocore: botocore 1.2.3\n- Rust (aws-config): ?\n\n## Cells\n\n", text)
        self.assertTrue(text.endswith(
            "### 1. first\n\n- botocore: pass — got it\n- Rust (aws-config): limit — by design\n\n"
            "### 2a. second\n\n- botocore: fail — no key\n\n"
            "### 2b. third\n\n- Rust (aws-config): odd — ?\n\n"))


class Differences(unittest.TestCase):
    DOC = ("| scenario | botocore | Go v2 |\n|---|---|---|\n| 1. first | pass | pass |\n"
           "| 2a. second | pass | limit¹ |\n\n## Clients\n\n- botocore: botocore 1.2.3\n- Go v2: 1.17.1\n\n"
           "## Cells\n\n- botocore: pass — got key ASIA1\n")

    def test_the_same_outcomes_with_other_details_do_not_differ(self):
        got = self.DOC.replace("ASIA1", "ASIA2")
        self.assertEqual(report.differences(self.DOC, got), [])

    def test_a_changed_cell_or_version_is_named_both_ways(self):
        got = self.DOC.replace("| 1. first | pass | pass |", "| 1. first | **FAIL** | pass |") \
            .replace("botocore 1.2.3", "botocore 1.2.4")
        self.assertEqual(report.differences(self.DOC, got), [
            "- | 1. first | pass | pass |", "+ | 1. first | **FAIL** | pass |",
            "- - botocore: botocore 1.2.3", "+ - botocore: botocore 1.2.4"])

    def test_only_what_the_run_covers_is_compared(self):
        got = "| 2a. second | pass | limit¹ |\n- Go v2: 1.17.1\n"
        self.assertEqual(report.differences(self.DOC, got), [])

    def test_a_new_scenario_row_is_a_difference(self):
        got = self.DOC.replace("| 2a. second | pass | limit¹ |",
                               "| 2a. second | pass | limit¹ |\n| 8. new | pass | pass |")
        self.assertEqual(report.differences(self.DOC, got), ["+ | 8. new | pass | pass |"])


if __name__ == "__main__":
    unittest.main()
