package token

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tchsm/tchsm/internal/pin"
)

// Defaults for Config fields left zero.
const (
	DefaultLabel          = "tchsm"
	DefaultSignTimeout    = 10 * time.Second
	DefaultKeygenTimeout  = 120 * time.Second
	DefaultRequestTimeout = 10 * time.Second
	DefaultListTimeout    = 3 * time.Second
	DefaultKeyCacheTTL    = 2 * time.Second
)

// Config is the PKCS#11 part of the client configuration file: the "pkcs11" object next to the
// client settings (parsed by the client the module opens). Every field has a usable zero value.
//
//	"pkcs11": {
//	  "token_label": "tchsm",              // CK_TOKEN_INFO.label, at most 32 bytes
//	  "serial": "0001",                    // CK_TOKEN_INFO.serialNumber, at most 16 bytes
//	  "user_pin_hash": "$argon2id$v=19$m=19456,t=2,p=1$...$...",  // from pin.Hash / the CLI
//	  "sign_timeout": "10s",               // deadline of one cluster signature
//	  "keygen_timeout": "120s",            // deadline of one key generation
//	  "request_timeout": "10s",            // deadline of a key deletion
//	  "list_timeout": "3s",                // deadline of a key listing (nodes that are down make it last that long)
//	  "key_cache_ttl": "2s",               // how long a key list is reused before asking again
//	  "log_file": "/var/log/tchsm/pkcs11.log", // empty: no logging at all
//	  "log_level": "info"                  // debug logs every failed call
//	}
type Config struct {
	TokenLabel     string   `json:"token_label"`
	Serial         string   `json:"serial"`
	UserPINHash    string   `json:"user_pin_hash"`
	SignTimeout    Duration `json:"sign_timeout"`
	KeygenTimeout  Duration `json:"keygen_timeout"`
	RequestTimeout Duration `json:"request_timeout"`
	ListTimeout    Duration `json:"list_timeout"`
	KeyCacheTTL    Duration `json:"key_cache_ttl"`
	LogFile        string   `json:"log_file"`
	LogLevel       string   `json:"log_level"`
}

// Duration is a time.Duration written in JSON as a Go duration string ("10s").
type Duration time.Duration

// UnmarshalJSON accepts "1m30s"-style strings.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("token: duration must be a string like \"10s\": %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// ErrConfig is wrapped by every configuration error.
var ErrConfig = errors.New("token: bad pkcs11 configuration")

// LoadConfig reads the "pkcs11" object of the client configuration file at path. A file
// without one yields the defaults (and a token without a user PIN, so nobody can log in).
func LoadConfig(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("%w: %w", ErrConfig, err)
	}
	var file struct {
		PKCS11 *json.RawMessage `json:"pkcs11"`
	}
	if err := json.Unmarshal(b, &file); err != nil {
		return Config{}, fmt.Errorf("%w: %s: %w", ErrConfig, path, err)
	}
	var c Config
	if file.PKCS11 != nil {
		dec := json.NewDecoder(strings.NewReader(string(*file.PKCS11)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return Config{}, fmt.Errorf("%w: %s: pkcs11: %w", ErrConfig, path, err)
		}
	}
	c = c.withDefaults()
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c Config) withDefaults() Config {
	if c.TokenLabel == "" {
		c.TokenLabel = DefaultLabel
	}
	if c.SignTimeout == 0 {
		c.SignTimeout = Duration(DefaultSignTimeout)
	}
	if c.KeygenTimeout == 0 {
		c.KeygenTimeout = Duration(DefaultKeygenTimeout)
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = Duration(DefaultRequestTimeout)
	}
	if c.ListTimeout == 0 {
		c.ListTimeout = Duration(DefaultListTimeout)
	}
	if c.KeyCacheTTL == 0 {
		c.KeyCacheTTL = Duration(DefaultKeyCacheTTL)
	}
	if c.Serial == "" {
		c.Serial = "0"
	}
	return c
}

// Validate checks a configuration with defaults applied.
func (c Config) Validate() error {
	if len(c.TokenLabel) > 32 || !utf8.ValidString(c.TokenLabel) {
		return fmt.Errorf("%w: token_label must be valid UTF-8 of at most 32 bytes", ErrConfig)
	}
	if len(c.Serial) > 16 || !printable(c.Serial) {
		return fmt.Errorf("%w: serial must be at most 16 printable ASCII characters", ErrConfig)
	}
	if c.UserPINHash != "" {
		if err := pin.Check(c.UserPINHash); err != nil {
			return fmt.Errorf("%w: user_pin_hash: %w", ErrConfig, err)
		}
	}
	for name, d := range map[string]Duration{"sign_timeout": c.SignTimeout, "keygen_timeout": c.KeygenTimeout,
		"request_timeout": c.RequestTimeout, "list_timeout": c.ListTimeout, "key_cache_ttl": c.KeyCacheTTL} {
		if d < 0 {
			return fmt.Errorf("%w: %s is negative", ErrConfig, name)
		}
	}
	return nil
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
