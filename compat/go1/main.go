// compat-go1: the AWS SDK for Go v1 default chain, unmodified: the session a
// normal program makes, session.NewSessionWithOptions with shared config
// enabled, and its Config.Credentials. Built offline against Debian's
// golang-github-aws-aws-sdk-go-dev (GO111MODULE=off GOPATH=/usr/share/gocode).
//
// One JSON line per step (PROBE_STEPS, default 1); each step after the first
// waits for a line on stdin. "fresh" is a new session (what a process starting
// now gets): credentials, the region the session resolves (v1 never asks IMDS
// for it), and with PROBE_STS_ENDPOINT a GetCallerIdentity signed through the
// session. "held" is step 0's *credentials.Credentials asked again, as a
// long-lived client would. "expiration" is what Credentials.ExpiresAt reports;
// the default chain's ChainProvider is no credentials.Expirer, so it is null.
// Every step (fresh, then held) is bounded at 15 s in all, fresh at 12 s.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go/aws"
	"github.com/aws/aws-sdk-go/aws/credentials"
	"github.com/aws/aws-sdk-go/aws/session"
	"github.com/aws/aws-sdk-go/service/sts"
)

// A step is bounded at 15 s in all; fresh gets the first 12, so held always
// has some left.
const (
	stepTimeout  = 15 * time.Second
	freshTimeout = 12 * time.Second
)

type result map[string]interface{}

// bounded runs f, giving up at the step's deadline (f may keep running).
func bounded(deadline time.Time, what string, f func(ctx context.Context) result) result {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	ch := make(chan result, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				ch <- result{"error": fmt.Sprintf("%s: panic: %v", what, r)}
			}
		}()
		ch <- f(ctx)
	}()
	select {
	case r := <-ch:
		return r
	case <-time.After(time.Until(deadline) + time.Second):
		return result{"error": what + ": timed out (the step is bounded at " + stepTimeout.String() + ")"}
	}
}

func ask(ctx context.Context, c *credentials.Credentials) result {
	v, err := c.GetWithContext(ctx)
	if err != nil {
		return result{"error": err.Error()}
	}
	var expiration interface{}
	if t, err := c.ExpiresAt(); err == nil && !t.IsZero() {
		expiration = t.UTC().Format("2006-01-02T15:04:05Z")
	}
	return result{
		"akid":       v.AccessKeyID,
		"source":     v.ProviderName,
		"expiration": expiration,
		"has_token":  v.SessionToken != "",
	}
}

func fresh(deadline time.Time) (result, *credentials.Credentials) {
	// Building the session reads the environment and the config files only.
	sess, err := session.NewSessionWithOptions(session.Options{
		SharedConfigState: session.SharedConfigEnable,
	})
	if err != nil {
		return result{"error": "NewSession: " + err.Error()}, nil
	}
	r := bounded(deadline, "fresh", func(ctx context.Context) result {
		v := ask(ctx, sess.Config.Credentials)
		if region := aws.StringValue(sess.Config.Region); region != "" {
			v["region"] = region
		} else {
			v["region"] = nil
		}
		if url := os.Getenv("PROBE_STS_ENDPOINT"); url != "" && v["error"] == nil {
			client := sts.New(sess, &aws.Config{
				Endpoint: aws.String(url),
				Region:   aws.String("us-east-1"),
			})
			out, err := client.GetCallerIdentityWithContext(ctx, &sts.GetCallerIdentityInput{})
			if err != nil {
				v["sts_error"] = err.Error()
			} else {
				v["arn"] = aws.StringValue(out.Arn)
			}
		}
		return v
	})
	return r, sess.Config.Credentials
}

func main() {
	steps, err := strconv.Atoi(os.Getenv("PROBE_STEPS"))
	if err != nil {
		steps = 1
	}
	in := bufio.NewScanner(os.Stdin)
	var held *credentials.Credentials
	for step := 0; step < steps; step++ {
		if step > 0 && !in.Scan() {
			break
		}
		start := time.Now()
		f, c := fresh(start.Add(freshTimeout))
		deadline := start.Add(stepTimeout)
		var h interface{}
		if step == 0 {
			held = c
		} else if held == nil {
			h = result{"error": "step 0 built no credentials object"}
		} else {
			h = bounded(deadline, "held", func(ctx context.Context) result { return ask(ctx, held) })
		}
		line, _ := json.Marshal(map[string]interface{}{
			"step": step, "version": "aws-sdk-go " + aws.SDKVersion, "fresh": f, "held": h,
		})
		fmt.Println(string(line))
	}
}
