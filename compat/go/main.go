// compat-go: the AWS SDK for Go v2 default chain, unmodified.
// Prints the resolved credentials' key id, source and expiry, and the region
// (from IMDS via config.WithEC2IMDSRegion when AWS_REGION is unset).
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
)

func main() {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	cfg, err := config.LoadDefaultConfig(ctx, config.WithEC2IMDSRegion())
	if err != nil {
		fmt.Fprintln(os.Stderr, "LoadDefaultConfig:", err)
		os.Exit(1)
	}
	fmt.Printf("sdk=%s\n", aws.SDKVersion)
	fmt.Printf("region=%s\n", cfg.Region)
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "Retrieve:", err)
		os.Exit(1)
	}
	fmt.Printf("access_key_id=%s\n", creds.AccessKeyID)
	fmt.Printf("source=%s\n", creds.Source)
	fmt.Printf("can_expire=%v\n", creds.CanExpire)
	fmt.Printf("expiration=%s\n", creds.Expires.UTC().Format(time.RFC3339))
	fmt.Printf("has_secret=%v has_token=%v\n", creds.SecretAccessKey != "", creds.SessionToken != "")
}
