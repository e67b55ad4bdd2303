module github.com/saferetry/saferetry

go 1.25

require github.com/hashicorp/go-cleanhttp v0.5.2

require (
	github.com/google/uuid v1.6.0 // indirect
	go.uber.org/goleak v1.3.0 // indirect
)
