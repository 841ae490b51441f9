# Benchmarks (docs/benchmarks.md). Both need root; neither touches the
# machine's own network: everything runs in a private network namespace.
.PHONY: bench bench-smoke

# Full run: installs missing Debian packages, measures, writes docs/benchmarks.md.
bench:
	go run ./bench/cmd/nsbench

# Smoke mode (the Go test CI runs as part of go test ./...).
bench-smoke:
	NSBENCH_INSTALL=1 go test -count=1 -run TestSmoke -v ./bench/
