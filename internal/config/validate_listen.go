package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/crypto/bcrypt"

	"github.com/egressd/egressd/policy"
)

// listeners validates a sandbox's listen, listen_auth, listen_mode and
// listen_owner: its explicit-proxy addresses.
func (v *validator) listeners(i int, f *fileSandbox) []policy.Listener {
	if len(f.Listen) == 0 {
		for key, val := range map[string]string{"listen_auth": f.ListenAuth, "listen_mode": f.ListenMode, "listen_owner": f.ListenOwner} {
			if val != "" {
				v.sbBad(i, f, key, errors.New(key+" needs listen"))
			}
		}
		return nil
	}
	user, hash, err := parseListenAuth(f.ListenAuth)
	if err != nil {
		v.sbBad(i, f, "listen_auth", fmt.Errorf("listen_auth: %w", err))
	}
	mode, err := parseListenMode(f.ListenMode)
	if err != nil {
		v.sbBad(i, f, "listen_mode", stringValue("listen_mode", f.ListenMode, err.Error()))
	}
	uid, gid, err := parseListenOwner(f.ListenOwner)
	if err != nil {
		v.sbBad(i, f, "listen_owner", stringValue("listen_owner", f.ListenOwner, err.Error()))
	}
	out := make([]policy.Listener, 0, len(f.Listen))
	seen, tcp := map[string]bool{}, false
	for j, s := range f.Listen {
		l, err := parseListen(s)
		if err == nil && seen[l.String()] {
			err = errors.New("listed twice")
		}
		if err != nil {
			v.sbElemBad(i, f, "listen", j, s, err)
			continue
		}
		seen[l.String()] = true
		if l.Network == "unix" {
			l.Mode, l.UID, l.GID = mode, uid, gid
		} else {
			l.User, l.PassHash, tcp = user, hash, true
		}
		out = append(out, l)
	}
	if f.ListenAuth != "" && !tcp {
		v.sbBad(i, f, "listen_auth", errors.New("listen_auth applies to TCP listeners, and listen has none: a unix socket's file mode is its access control"))
	}
	return out
}

// parseListen reads "ip:port" or "unix:/absolute/path".
func parseListen(s string) (policy.Listener, error) {
	if path, ok := strings.CutPrefix(s, "unix:"); ok {
		if !filepath.IsAbs(path) || filepath.Clean(path) != path {
			return policy.Listener{}, errors.New("want unix:/an/absolute/clean/path")
		}
		return policy.Listener{Network: "unix", Address: path, UID: -1, GID: -1}, nil
	}
	ap, err := netip.ParseAddrPort(s)
	if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
		return policy.Listener{}, errors.New("want ip:port (127.0.0.1:1080, [::1]:1080) or unix:/path")
	}
	return policy.Listener{Network: "tcp", Address: ap.String(), UID: -1, GID: -1}, nil
}

// parseListenAuth reads "user:bcrypt-hash", as `htpasswd -nbB user pw`
// prints it.
func parseListenAuth(s string) (string, string, error) {
	if s == "" {
		return "", "", nil
	}
	u, hash, ok := strings.Cut(s, ":")
	if !ok || u == "" {
		return "", "", errors.New(`want "user:bcrypt-hash" (htpasswd -nbB user password)`)
	}
	if _, err := bcrypt.Cost([]byte(hash)); err != nil {
		return "", "", fmt.Errorf("user %q: the password hash is not bcrypt (htpasswd -nbB user password): %w", u, err)
	}
	return u, hash, nil
}

// parseListenMode reads an octal file mode; "" is 0600.
func parseListenMode(s string) (uint32, error) {
	if s == "" {
		return 0o600, nil
	}
	m, err := strconv.ParseUint(s, 8, 32)
	if err != nil || m > 0o777 {
		return 0, errors.New(`want an octal file mode such as "0660"`)
	}
	return uint32(m), nil
}

// parseListenOwner reads "user", "user:group" or numeric ids; "" leaves
// the socket the process's.
func parseListenOwner(s string) (int, int, error) {
	if s == "" {
		return -1, -1, nil
	}
	us, gs, _ := strings.Cut(s, ":")
	uid, gid := -1, -1
	if us != "" {
		id, err := lookupID(us, func(n string) (string, error) {
			u, err := user.Lookup(n)
			if err != nil {
				return "", err
			}
			return u.Uid, nil
		})
		if err != nil {
			return 0, 0, err
		}
		uid = id
	}
	if gs != "" {
		id, err := lookupID(gs, func(n string) (string, error) {
			g, err := user.LookupGroup(n)
			if err != nil {
				return "", err
			}
			return g.Gid, nil
		})
		if err != nil {
			return 0, 0, err
		}
		gid = id
	}
	return uid, gid, nil
}

func lookupID(s string, byName func(string) (string, error)) (int, error) {
	if n, err := strconv.Atoi(s); err == nil && n >= 0 {
		return n, nil
	}
	id, err := byName(s)
	if err != nil {
		return 0, fmt.Errorf("no such user or group %q", s)
	}
	return strconv.Atoi(id)
}
