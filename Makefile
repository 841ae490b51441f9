# Benchmarks (docs/benchmarks.md). Both need root; neither touches the
# machine's own network: everything runs in a private network namespace.
.PHONY: bench bench-smoke

# Full run: installs missing Debian packages (-install), measures, writes
# docs/benchmarks.md.
bench:
	go run ./bench/cmd/nsbench -install

# Smoke mode (the Go test CI runs as part of go test ./...). It installs
# nothing: without bench.Packages it skips (fails under CI=true); .ci/run
# installs them.
bench-smoke:
	go test -count=1 -run TestSmoke -v ./bench/
