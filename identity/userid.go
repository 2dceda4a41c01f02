package identity

import (
	"strconv"
	"strings"
)

// MaxNameLen is the longest user name (the part before '@').
const MaxNameLen = 64

// MaxDomainLen is the longest domain, including an optional ":port".
const MaxDomainLen = 253 + len(":65535")

// MaxClientIDLen is the longest client id.
const MaxClientIDLen = 64

// UserID is a parsed user id "name@domain".
type UserID struct {
	// Name is the local part: 1 to 64 characters of [a-z0-9._-].
	Name string
	// Domain is the user's homeserver: a lowercase DNS name, optionally
	// followed by ":port" (used by the local testnet).
	Domain string
}

// String returns the user id as "name@domain".
func (u UserID) String() string { return u.Name + "@" + u.Domain }

// ParseUserID parses and checks "name@domain". The name is 1 to 64
// characters of [a-z0-9._-]; the domain must pass [ValidateDomain]. Ids are
// case-sensitive and must already be lowercase: ParseUserID does not fold
// case, so that one user has exactly one spelling. Errors have code
// [CodeBadUserID].
func ParseUserID(s string) (UserID, error) {
	at := strings.IndexByte(s, '@')
	if at < 0 {
		return UserID{}, errorf(CodeBadUserID, "user id %q has no '@'", s)
	}
	name, domain := s[:at], s[at+1:]
	if len(name) == 0 || len(name) > MaxNameLen {
		return UserID{}, errorf(CodeBadUserID, "user name must be 1 to %d characters", MaxNameLen)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return UserID{}, errorf(CodeBadUserID, "user name %q: character %q not in [a-z0-9._-]", name, c)
		}
	}
	if err := checkDomain(domain); err != nil {
		return UserID{}, errorf(CodeBadUserID, "user id %q: %s", s, err.Msg)
	}
	return UserID{Name: name, Domain: domain}, nil
}

// ValidateDomain checks a homeserver domain: a lowercase DNS name (labels of
// [a-z0-9-], 1 to 63 characters, not starting or ending with '-'; single-label
// names such as "localhost" are allowed), optionally followed by ":port" with
// a port in 1..65535. Errors have code [CodeBadDomain].
func ValidateDomain(domain string) error {
	if err := checkDomain(domain); err != nil {
		return err
	}
	return nil
}

func checkDomain(domain string) *Error {
	if len(domain) == 0 || len(domain) > MaxDomainLen {
		return errorf(CodeBadDomain, "domain must be 1 to %d characters", MaxDomainLen)
	}
	host := domain
	if i := strings.LastIndexByte(domain, ':'); i >= 0 {
		host = domain[:i]
		port := domain[i+1:]
		n, err := strconv.ParseUint(port, 10, 16)
		if err != nil || n == 0 || port[0] == '0' {
			return errorf(CodeBadDomain, "domain %q: bad port", domain)
		}
	}
	if len(host) == 0 || len(host) > 253 {
		return errorf(CodeBadDomain, "domain %q: host must be 1 to 253 characters", domain)
	}
	for label := range strings.SplitSeq(host, ".") {
		if len(label) == 0 || len(label) > 63 {
			return errorf(CodeBadDomain, "domain %q: labels must be 1 to 63 characters", domain)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errorf(CodeBadDomain, "domain %q: label starts or ends with '-'", domain)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return errorf(CodeBadDomain, "domain %q: character %q not in [a-z0-9-]", domain, c)
			}
		}
	}
	return nil
}

// ValidateClientID checks a client id: 1 to 64 characters of the URL
// unreserved set [A-Za-z0-9._~-], so that it fits in a header and a path
// segment unescaped. Errors have code [CodeBadClientID].
func ValidateClientID(id string) error {
	if len(id) == 0 || len(id) > MaxClientIDLen {
		return errorf(CodeBadClientID, "client id must be 1 to %d characters", MaxClientIDLen)
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '.' || c == '_' || c == '~' || c == '-') {
			return errorf(CodeBadClientID, "client id: character %q not in [A-Za-z0-9._~-]", c)
		}
	}
	return nil
}
