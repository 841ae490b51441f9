package bench

import (
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	var s []Sample
	for i := 1; i <= 20; i++ {
		s = append(s, Sample{Wall: time.Duration(21-i) * time.Millisecond, MaxRSS: int64(i)})
	}
	got := summarize(s)
	if got.Count != 20 || got.Median != 10500*time.Microsecond || got.P95 != 19*time.Millisecond ||
		got.Min != time.Millisecond || got.Max != 20*time.Millisecond || got.MaxRSS != 10 || got.MaxRSSPeak != 20 {
		t.Errorf("summarize = %+v", got)
	}
	if one := summarize(s[:1]); one.Median != 20*time.Millisecond || one.P95 != 20*time.Millisecond {
		t.Errorf("summarize of one = %+v", one)
	}
	if summarize(nil).Count != 0 {
		t.Error("summarize(nil) counted samples")
	}
}

func TestNthHost(t *testing.T) {
	for i, want := range map[int]string{0: "10.88.0.2", 253: "10.88.0.255", 254: "10.88.1.0", 999: "10.88.3.233"} {
		if got := memberAddr(i).String(); got != want {
			t.Errorf("memberAddr(%d) = %s, want %s", i, got, want)
		}
	}
}
