package store

import (
	"net/netip"
	"time"
)

// Joined is this host's membership of a cluster (`nsnet host join`): what
// the cluster's keeper needs to keep it alive and to reach etcd again.
type Joined struct {
	Name    string     `json:"name"`
	Address netip.Addr `json:"address"`
	// Endpoints are etcd's client URLs; Prefix the keys' prefix.
	Endpoints []string `json:"endpoints"`
	Prefix    string   `json:"prefix"`
	// TLS client certificate, key and CA files, when etcd wants them.
	Cert string `json:"cert,omitempty"`
	Key  string `json:"key,omitempty"`
	CA   string `json:"ca,omitempty"`
	// TTL is the host's lease in seconds: others drop its routes this
	// long after it stops renewing.
	TTL int `json:"ttl"`
	// Grace is how long the host's blocks stay reserved after it died.
	Grace time.Duration `json:"grace"`
	// HostNetns is the namespace that joined (empty: the one nsnet ran
	// in): the keeper runs there.
	HostNetns string    `json:"host_netns,omitempty"`
	Joined    time.Time `json:"joined"`
}

var selfKey = "self"

// Joined reads this host's cluster membership.
func (t *Tx) Joined() (Joined, bool, error) { return get[Joined](t, bCluster, selfKey) }

// PutJoined records this host's cluster membership.
func (t *Tx) PutJoined(j Joined) error { return put(t, bCluster, selfKey, j) }

// DeleteJoined forgets it.
func (t *Tx) DeleteJoined() error { return del(t, bCluster, selfKey) }
