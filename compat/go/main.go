// compat-go: the AWS SDK for Go v2 default chain, unmodified.
//
// One JSON line per step (PROBE_STEPS, default 1); each step after the first
// waits for a line on stdin. "fresh" is a new config.LoadDefaultConfig (what a
// process starting now gets), with config.WithEC2IMDSRegion so the region
// comes from the identity document when AWS_REGION is unset, and with
// PROBE_STS_ENDPOINT a signed GetCallerIdentity made through it. "held" is
// step 0's credentials cache asked again, as a long-lived client would.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

type result map[string]interface{}

func ask(ctx context.Context, p aws.CredentialsProvider) result {
	c, err := p.Retrieve(ctx)
	if err != nil {
		return result{"error": err.Error()}
	}
	return result{
		"akid":       c.AccessKeyID,
		"source":     c.Source,
		"expiration": c.Expires.UTC().Format(time.RFC3339),
		"has_token":  c.SessionToken != "",
	}
}

func fresh() (result, aws.CredentialsProvider) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithEC2IMDSRegion())
	if err != nil {
		return result{"error": "LoadDefaultConfig: " + err.Error()}, nil
	}
	v := ask(ctx, cfg.Credentials)
	v["region"] = cfg.Region
	if url := os.Getenv("PROBE_STS_ENDPOINT"); url != "" && v["error"] == nil {
		client := sts.NewFromConfig(cfg, func(o *sts.Options) {
			o.Region = "us-east-1"
			o.EndpointResolver = sts.EndpointResolverFromURL(url)
		})
		out, err := client.GetCallerIdentity(ctx, &sts.GetCallerIdentityInput{})
		if err != nil {
			v["sts_error"] = err.Error()
		} else {
			v["arn"] = aws.ToString(out.Arn)
		}
	}
	return v, cfg.Credentials
}

func main() {
	steps, err := strconv.Atoi(os.Getenv("PROBE_STEPS"))
	if err != nil {
		steps = 1
	}
	in := bufio.NewScanner(os.Stdin)
	var held aws.CredentialsProvider
	for step := 0; step < steps; step++ {
		if step > 0 && !in.Scan() {
			break
		}
		f, p := fresh()
		var h interface{}
		if held != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			h = ask(ctx, held)
			cancel()
		}
		if held == nil {
			held = p
		}
		line, _ := json.Marshal(map[string]interface{}{
			"step": step, "version": "aws-sdk-go-v2 " + aws.SDKVersion, "fresh": f, "held": h,
		})
		fmt.Println(string(line))
	}
}
