// Package integration tests saferetry chained with the RoundTrippers and
// SDKs its users combine it with: golang.org/x/oauth2, OpenTelemetry's
// otelhttp, go-github and stripe-go; and through a fault it did not
// write, Shopify's toxiproxy, run in the test process as a congested link
// (TestCongestedLink, issue 11). It is a module of its own so that the
// core keeps its three dependencies; it holds only tests, all against
// loopback servers. README.md in this directory says how to stack each
// one and what the tests observed.
package integration
