package engine

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/nsnet/nsnet/internal/agent"
	"github.com/nsnet/nsnet/internal/store"
)

// checkAliases refuses aliases that are not DNS names or that name another
// member of the network, and returns them as the resolver matches them:
// lowercase, without a trailing dot ("Web." is "web"), so that no spelling
// slips past the checks.
func checkAliases(tx *store.Tx, n store.Network, ns string, aliases []string) ([]string, error) {
	if len(aliases) == 0 {
		return nil, nil
	}
	if !n.DNS {
		return nil, fmt.Errorf("network %q has no DNS, so aliases would mean nothing", n.Name)
	}
	members, err := tx.Members(n.Name)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, given := range aliases {
		al, err := dnsName(given)
		if err != nil {
			return nil, fmt.Errorf("alias %q: %w", given, err)
		}
		if al == canonicalName(ns) {
			return nil, fmt.Errorf("alias %q is the member's own name", given)
		}
		if slices.Contains(out, al) {
			return nil, errorf(ErrExists, "alias %q is given twice", given)
		}
		for _, m := range members {
			if canonicalName(m.Namespace) == al {
				return nil, errorf(ErrInUse, "alias %q is the name of another member of network %q", given, n.Name)
			}
			for _, other := range m.Aliases {
				if canonicalName(other) == al {
					return nil, errorf(ErrInUse, "alias %q is already an alias of %q in network %q", given, m.Namespace, n.Name)
				}
			}
		}
		out = append(out, al)
	}
	return out, nil
}

// canonicalName is a name as the resolver matches it.
func canonicalName(s string) string { return strings.ToLower(strings.TrimSuffix(s, ".")) }

// dnsName checks that s is a host name (RFC 1123: dot-separated labels of
// letters, digits and hyphens, 1 to 63 characters each, no hyphen at either
// end; 253 characters in all) and returns it canonical.
func dnsName(s string) (string, error) {
	name := canonicalName(s)
	if name == "" || len(name) > 253 {
		return "", errors.New("not a DNS name (1 to 253 characters)")
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" || len(label) > 63 {
			return "", errors.New("not a DNS name: every label has 1 to 63 characters")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return "", errors.New("not a DNS name: a label starts or ends with '-'")
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
				return "", fmt.Errorf("not a DNS name: %q is not a letter, digit or '-'", r)
			}
		}
	}
	return name, nil
}

// resolvConf is the namespace's own resolv.conf, which `nsnet exec` and
// `ip netns exec` mount over /etc/resolv.conf.
func (m *Manager) resolvConf(ns string) string { return filepath.Join(m.etcDir, ns, "resolv.conf") }

// setResolver adds (or with add unset, removes) network n's block of
// nameserver lines in the namespace's resolv.conf. Blocks of other
// networks stay, in the order joined.
func (m *Manager) setResolver(ns string, n store.Network, add bool) error {
	if !n.DNS {
		return nil
	}
	p := m.resolvConf(ns)
	old, err := os.ReadFile(p)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("read %s: %w", p, err)
	}
	header := "# nsnet network " + n.Name
	var kept []string
	skipping := false
	for _, line := range strings.Split(strings.TrimRight(string(old), "\n"), "\n") {
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "# nsnet network "):
			skipping = line == header
		}
		if !skipping {
			kept = append(kept, line)
		}
	}
	if add {
		kept = append(kept, header)
		for _, s := range agent.Servers(n) {
			kept = append(kept, "nameserver "+s.String())
		}
	}
	if len(kept) == 0 {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	tmp := p + ".nsnet-tmp"
	if err := os.WriteFile(tmp, []byte(strings.Join(kept, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, p)
}

// AgentNeeded reports whether a DNS network has members, so that the
// agent should be running.
func (m *Manager) AgentNeeded() (bool, error) {
	var need bool
	err := m.st.View(func(tx *store.Tx) (err error) { need, err = agent.Needed(tx); return err })
	return need, err
}

// Generation numbers the store's state as it is now; the agent reports
// the generation it serves.
func (m *Manager) Generation() (uint64, error) {
	var gen uint64
	err := m.st.View(func(tx *store.Tx) error { gen = tx.Generation(); return nil })
	return gen, err
}

// forgetResolver drops a membership's resolv.conf block, knowing only the
// journal's names; a block that is not there is no error.
func (m *Manager) forgetResolver(o store.Op) error {
	return m.setResolver(o.Namespace, store.Network{Name: o.Network, DNS: true}, false)
}
