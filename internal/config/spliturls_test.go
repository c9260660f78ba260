package config

import (
	"slices"
	"testing"
)

func TestSplitURLs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"amqp://a/", []string{"amqp://a/"}},
		{"amqp://a/,amqp://b/", []string{"amqp://a/", "amqp://b/"}},
		{" amqp://a/ , amqps://b:5671/v ,", []string{"amqp://a/", "amqps://b:5671/v"}},
		// A comma inside a password is not a separator: no amqp:// follows it.
		{"amqp://u:p,w@a/,amqp://u:p,w@b/", []string{"amqp://u:p,w@a/", "amqp://u:p,w@b/"}},
		{",,amqp://a/", []string{"amqp://a/"}},
	} {
		if got := SplitURLs(tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("SplitURLs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}
