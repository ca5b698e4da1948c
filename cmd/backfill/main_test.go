package main

import "testing"

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"256MiB": 256 << 20, "1GiB": 1 << 30, "1.5GiB": 3 << 29, "1GB": 1e9, "4096": 4096, "64 KiB": 64 << 10} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "-1GiB", "12abc", "1 GiB of RAM", "99999999999GiB", "GiB"} {
		if got, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, got)
		}
	}
}

func TestParseTime(t *testing.T) {
	for in, want := range map[string]int64{"1700000000000": 1_700_000_000_000, "2023-11-14T22:13:20Z": 1_700_000_000_000, "2023-11-14T23:13:20.5+01:00": 1_700_000_000_500, "0": 0} {
		if got, err := parseTime(in); err != nil || got.UnixMilli() != want {
			t.Errorf("parseTime(%q) = %v, %v; want %d ms", in, got, err, want)
		}
	}
	for _, in := range []string{"", "yesterday", "1700000000000.5", "2023-11-14", "99999999999999999"} {
		if got, err := parseTime(in); err == nil {
			t.Errorf("parseTime(%q) = %v, want an error", in, got)
		}
	}
}
