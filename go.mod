module github.com/saferetry/saferetry

go 1.25

require (
	github.com/google/uuid v1.6.0
	github.com/hashicorp/go-cleanhttp v0.5.2
	go.uber.org/goleak v1.3.0
)
