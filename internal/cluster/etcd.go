// Package cluster is nsnet's state shared by several hosts, kept in etcd:
// the hosts that joined (each under a lease it keeps alive), cluster
// networks, the address blocks each host claimed of them, and the vxlan
// endpoints. Host-local state stays in nsnet's embedded store. The package
// is linked into nsnet-cluster only, so that etcd's client (gRPC) does not
// slow every nsnet command's start.
package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Errors callers match with errors.Is.
var (
	ErrUnreachable = errors.New("etcd unreachable")
	ErrExists      = errors.New("already exists")
	ErrNotFound    = errors.New("not found")
	ErrInvalid     = errors.New("invalid")
	ErrFull        = errors.New("no free block")
)

// Timeout bounds every etcd request a command makes.
const Timeout = 3 * time.Second

// Config says where etcd is.
type Config struct {
	Endpoints []string
	Prefix    string
	// TLS client certificate, key and CA files.
	Cert, Key, CA string
}

// ParseURL reads --cluster: etcd://HOST:PORT[,HOST:PORT...] (etcds:// for
// TLS).
func ParseURL(s string) ([]string, error) {
	scheme, rest, ok := strings.Cut(s, "://")
	if !ok || (scheme != "etcd" && scheme != "etcds") || rest == "" {
		return nil, fmt.Errorf("--cluster %q: %w: want etcd://HOST:PORT[,HOST:PORT...] (etcds:// for TLS)", s, ErrInvalid)
	}
	web := "http://"
	if scheme == "etcds" {
		web = "https://"
	}
	var out []string
	for _, hp := range strings.Split(rest, ",") {
		host, port, err := net.SplitHostPort(hp)
		n, perr := strconv.Atoi(port)
		if err != nil || host == "" || perr != nil || n < 1 || n > 65535 || strings.ContainsAny(hp, "/?#@ ") {
			return nil, fmt.Errorf("--cluster %q: %w: %q is not HOST:PORT", s, ErrInvalid, hp)
		}
		if strings.HasPrefix(hp, "[") {
			if _, err := netip.ParseAddr(host); err != nil {
				return nil, fmt.Errorf("--cluster %q: %w: %q is not an address", s, ErrInvalid, host)
			}
		}
		out = append(out, web+hp)
	}
	return out, nil
}

// Client is a connection to the cluster's etcd.
type Client struct {
	c      *clientv3.Client
	prefix string
	cfg    Config
}

// Dial connects to etcd and checks, within Timeout, that it answers.
func Dial(cfg Config) (*Client, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "/nsnet"
	}
	cc := clientv3.Config{Endpoints: cfg.Endpoints, DialTimeout: Timeout, DialKeepAliveTime: 5 * time.Second,
		DialKeepAliveTimeout: 3 * time.Second, Logger: zap.NewNop()}
	if cfg.Cert != "" || cfg.CA != "" {
		t, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		cc.TLS = t
	}
	c, err := clientv3.New(cc)
	if err != nil {
		return nil, fmt.Errorf("cluster %s: %w: %v", URL(cfg.Endpoints), ErrUnreachable, err)
	}
	cl := &Client{c: c, prefix: strings.TrimSuffix(cfg.Prefix, "/"), cfg: cfg}
	ctx, cancel := context.WithTimeout(context.Background(), Timeout)
	defer cancel()
	if _, err := c.Get(ctx, cl.prefix+"/hosts/", clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		c.Close()
		return nil, cl.wrap(err)
	}
	return cl, nil
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	t := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.Cert != "" {
		pair, err := tls.LoadX509KeyPair(cfg.Cert, cfg.Key)
		if err != nil {
			return nil, fmt.Errorf("cluster TLS client certificate: %w", err)
		}
		t.Certificates = []tls.Certificate{pair}
	}
	if cfg.CA != "" {
		raw, err := os.ReadFile(cfg.CA)
		if err != nil {
			return nil, fmt.Errorf("cluster TLS CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(raw) {
			return nil, fmt.Errorf("cluster TLS CA %s: no certificate in it", cfg.CA)
		}
		t.RootCAs = pool
	}
	return t, nil
}

// Close ends the connection.
func (c *Client) Close() error { return c.c.Close() }

func (c *Client) wrap(err error) error {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) || strings.Contains(err.Error(), "connection") {
		return fmt.Errorf("cluster %s: %w (%v)", URL(c.cfg.Endpoints), ErrUnreachable, err)
	}
	return fmt.Errorf("cluster: %w", err)
}

// URL spells endpoints as --cluster takes them.
func URL(endpoints []string) string {
	scheme, hosts := "etcd://", make([]string, len(endpoints))
	for i, e := range endpoints {
		if strings.HasPrefix(e, "https://") {
			scheme = "etcds://"
		}
		hosts[i] = strings.TrimPrefix(strings.TrimPrefix(e, "https://"), "http://")
	}
	return scheme + strings.Join(hosts, ",")
}

func (c *Client) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), Timeout)
}

// Host is a joined host.
type Host struct {
	Name    string     `json:"name"`
	Address netip.Addr `json:"address"`
	Joined  time.Time  `json:"joined"`
	// TTL is its lease, in seconds; Grace how long its blocks stay
	// reserved after it died.
	TTL   int           `json:"ttl"`
	Grace time.Duration `json:"grace"`
}

// Network is a cluster network.
type Network struct {
	Name      string       `json:"name"`
	Subnet    netip.Prefix `json:"subnet"`
	BlockBits int          `json:"block_bits"`
	Backend   string       `json:"backend"`
	VNI       int          `json:"vni,omitempty"`
	// MTU is the members' MTU (the vxlan backend's is the underlay's less
	// the encapsulation); zero means the default.
	MTU     int       `json:"mtu,omitempty"`
	Created time.Time `json:"created"`
}

// Block is a part of a network's subnet that one host hands out.
type Block struct {
	Network string       `json:"network"`
	Prefix  netip.Prefix `json:"prefix"`
	Host    string       `json:"host"`
	Claimed time.Time    `json:"claimed"`
	// Grace is the owner's: how long the block stays reserved after the
	// owner died. Orphaned is when a host first saw the owner gone.
	Grace    time.Duration `json:"grace"`
	Orphaned time.Time     `json:"orphaned,omitzero"`
	rev      int64
}

// VTEP is a host's vxlan endpoint on a network.
type VTEP struct {
	Network string     `json:"network"`
	Host    string     `json:"host"`
	MAC     string     `json:"mac"`
	Inner   netip.Addr `json:"inner"`
	Outer   netip.Addr `json:"outer"`
}

func (c *Client) hostKey(name string) string  { return c.prefix + "/hosts/" + name }
func (c *Client) netKey(name string) string   { return c.prefix + "/networks/" + name }
func (c *Client) blocksKey(net string) string { return c.prefix + "/blocks/" + net + "/" }
func (c *Client) blockKey(net string, p netip.Prefix) string {
	return c.blocksKey(net) + strings.ReplaceAll(p.String(), "/", "-")
}
func (c *Client) vtepKey(net, host string) string { return c.prefix + "/vteps/" + net + "/" + host }

// Join registers a host under a new lease of ttl seconds and returns the
// lease; a name held by a live host is refused.
func (c *Client) Join(h Host) (clientv3.LeaseID, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	l, err := c.c.Grant(ctx, int64(h.TTL))
	if err != nil {
		return 0, c.wrap(err)
	}
	raw, _ := json.Marshal(h)
	key := c.hostKey(h.Name)
	r, err := c.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(raw), clientv3.WithLease(l.ID))).Commit()
	if err != nil {
		return 0, c.wrap(err)
	}
	if !r.Succeeded {
		c.c.Revoke(ctx, l.ID)
		return 0, fmt.Errorf("host %s: %w: a live host holds that name (nsnet host ls; nsnet host rm %s if it is dead)", h.Name, ErrExists, h.Name)
	}
	return l.ID, nil
}

// Rejoin puts the host back under a new lease, whatever held the name
// (the keeper does this for its own host when its lease was lost).
func (c *Client) Rejoin(h Host) (clientv3.LeaseID, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	l, err := c.c.Grant(ctx, int64(h.TTL))
	if err != nil {
		return 0, c.wrap(err)
	}
	raw, _ := json.Marshal(h)
	if _, err := c.c.Put(ctx, c.hostKey(h.Name), string(raw), clientv3.WithLease(l.ID)); err != nil {
		return 0, c.wrap(err)
	}
	return l.ID, nil
}

// KeepAlive renews the lease until ctx ends; the channel closes when the
// lease is lost.
func (c *Client) KeepAlive(ctx context.Context, id clientv3.LeaseID) (<-chan *clientv3.LeaseKeepAliveResponse, error) {
	ch, err := c.c.KeepAlive(ctx, id)
	if err != nil {
		return nil, c.wrap(err)
	}
	return ch, nil
}

// Leave revokes a lease: the host's keys go at once.
func (c *Client) Leave(id clientv3.LeaseID) error {
	ctx, cancel := c.ctx()
	defer cancel()
	_, err := c.c.Revoke(ctx, id)
	if err != nil {
		return c.wrap(err)
	}
	return nil
}

// Hosts lists the live hosts.
func (c *Client) Hosts() ([]Host, error) {
	return list[Host](c, c.prefix+"/hosts/")
}

// RemoveHost removes a host at once: its registration, its vxlan
// endpoints and its blocks.
func (c *Client) RemoveHost(name string) (bool, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	r, err := c.c.Delete(ctx, c.hostKey(name))
	if err != nil {
		return false, c.wrap(err)
	}
	found := r.Deleted > 0
	vteps, err := list[VTEP](c, c.prefix+"/vteps/")
	if err != nil {
		return found, err
	}
	for _, v := range vteps {
		if v.Host == name {
			found = true
			if _, err := c.c.Delete(ctx, c.vtepKey(v.Network, v.Host)); err != nil {
				return found, c.wrap(err)
			}
		}
	}
	blocks, err := listBlocks(c, c.prefix+"/blocks/")
	if err != nil {
		return found, err
	}
	for _, b := range blocks {
		if b.Host == name {
			found = true
			if _, err := c.c.Delete(ctx, c.blockKey(b.Network, b.Prefix)); err != nil {
				return found, c.wrap(err)
			}
		}
	}
	return found, nil
}

// CreateNetwork records a cluster network unless one by that name
// exists; one with the same settings is no error (another host's create).
func (c *Client) CreateNetwork(n Network) (Network, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	nets, err := c.Networks()
	if err != nil {
		return n, err
	}
	for _, o := range nets {
		if o.Name == n.Name {
			if o.Subnet == n.Subnet && o.BlockBits == n.BlockBits && o.Backend == n.Backend && (n.MTU == 0 || o.MTU == n.MTU) {
				return o, nil
			}
			return o, fmt.Errorf("network %q: %w in the cluster with other settings (subnet %s, block /%d, backend %s)", n.Name, ErrExists, o.Subnet, o.BlockBits, o.Backend)
		}
		if o.Subnet.Overlaps(n.Subnet) {
			return n, fmt.Errorf("network %q: subnet %s overlaps cluster network %s's %s", n.Name, n.Subnet, o.Name, o.Subnet)
		}
	}
	if n.Backend == "vxlan" {
		// VNIs are handed out in order; a clash is caught below.
		n.VNI = 4096
		for _, o := range nets {
			n.VNI = max(n.VNI, o.VNI+1)
		}
	}
	n.Created = time.Now().UTC()
	raw, _ := json.Marshal(n)
	key := c.netKey(n.Name)
	r, err := c.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(raw))).Commit()
	if err != nil {
		return n, c.wrap(err)
	}
	if !r.Succeeded {
		return c.CreateNetwork(n) // another host made it meanwhile: compare
	}
	return n, nil
}

// RemoveNetwork removes a cluster network, its blocks and its vxlan
// endpoints, in one transaction; found is false when there was none.
func (c *Client) RemoveNetwork(name string) (found bool, err error) {
	ctx, cancel := c.ctx()
	defer cancel()
	r, err := c.c.Txn(ctx).Then(
		clientv3.OpDelete(c.netKey(name)),
		clientv3.OpDelete(c.blocksKey(name), clientv3.WithPrefix()),
		clientv3.OpDelete(c.prefix+"/vteps/"+name+"/", clientv3.WithPrefix()),
	).Commit()
	if err != nil {
		return false, c.wrap(err)
	}
	return r.Responses[0].GetResponseDeleteRange().Deleted > 0, nil
}

// Network reads a cluster network.
func (c *Client) Network(name string) (Network, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	r, err := c.c.Get(ctx, c.netKey(name))
	if err != nil {
		return Network{}, c.wrap(err)
	}
	if len(r.Kvs) == 0 {
		return Network{}, fmt.Errorf("network %q: %w in the cluster", name, ErrNotFound)
	}
	var n Network
	return n, json.Unmarshal(r.Kvs[0].Value, &n)
}

// Networks lists the cluster networks.
func (c *Client) Networks() ([]Network, error) { return list[Network](c, c.prefix+"/networks/") }

// Blocks lists a network's claimed blocks ("" for every network's).
func (c *Client) Blocks(network string) ([]Block, error) {
	if network == "" {
		return listBlocks(c, c.prefix+"/blocks/")
	}
	return listBlocks(c, c.blocksKey(network))
}

// ClaimBlock claims the first free block of n for host. Each claim is a
// create-if-absent transaction, so two hosts never hold one block.
func (c *Client) ClaimBlock(n Network, host string, grace time.Duration) (Block, error) {
	held, err := c.Blocks(n.Name)
	if err != nil {
		return Block{}, err
	}
	taken := map[netip.Prefix]bool{}
	for _, b := range held {
		taken[b.Prefix] = true
	}
	for p := range blocksOf(n.Subnet, n.BlockBits) {
		if taken[p] {
			continue
		}
		b := Block{Network: n.Name, Prefix: p, Host: host, Claimed: time.Now().UTC(), Grace: grace}
		if ok, err := c.claim(b); err != nil || ok {
			return b, err
		}
	}
	return Block{}, fmt.Errorf("network %q: %w: every /%d block of %s is held", n.Name, ErrFull, n.BlockBits, n.Subnet)
}

// claim records b unless its block is held: a create-if-absent
// transaction, so two hosts never hold one block.
func (c *Client) claim(b Block) (bool, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	raw, _ := json.Marshal(b)
	key := c.blockKey(b.Network, b.Prefix)
	r, err := c.c.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(raw))).Commit()
	if err != nil {
		return false, c.wrap(err)
	}
	return r.Succeeded, nil
}

// MarkOrphaned records when a block's owner was first seen dead; Release
// drops a block, both only if the block is as read (its revision).
func (c *Client) MarkOrphaned(b Block, at time.Time) error {
	b.Orphaned = at
	return c.casBlock(b, true)
}

// Release drops a block if it is as read.
func (c *Client) Release(b Block) error { return c.casBlock(b, false) }

// Adopt clears a block's orphaned mark (its owner came back).
func (c *Client) Adopt(b Block) error {
	b.Orphaned = time.Time{}
	return c.casBlock(b, true)
}

func (c *Client) casBlock(b Block, put bool) error {
	ctx, cancel := c.ctx()
	defer cancel()
	key := c.blockKey(b.Network, b.Prefix)
	op := clientv3.OpDelete(key)
	if put {
		raw, _ := json.Marshal(b)
		op = clientv3.OpPut(key, string(raw))
	}
	_, err := c.c.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", b.rev)).Then(op).Commit()
	if err != nil {
		return c.wrap(err)
	}
	return nil
}

// PutVTEP records a host's vxlan endpoint under its lease.
func (c *Client) PutVTEP(v VTEP, lease clientv3.LeaseID) error {
	ctx, cancel := c.ctx()
	defer cancel()
	raw, _ := json.Marshal(v)
	if _, err := c.c.Put(ctx, c.vtepKey(v.Network, v.Host), string(raw), clientv3.WithLease(lease)); err != nil {
		return c.wrap(err)
	}
	return nil
}

// VTEPs lists every vxlan endpoint.
func (c *Client) VTEPs() ([]VTEP, error) { return list[VTEP](c, c.prefix+"/vteps/") }

// Watch reports, on the returned channel, that something under the prefix
// changed (a value per batch of events), until ctx ends.
func (c *Client) Watch(ctx context.Context) <-chan struct{} {
	out := make(chan struct{}, 1)
	wc := c.c.Watch(clientv3.WithRequireLeader(ctx), c.prefix+"/", clientv3.WithPrefix())
	go func() {
		defer close(out)
		for range wc {
			select {
			case out <- struct{}{}:
			default:
			}
		}
	}()
	return out
}

func list[T any](c *Client, prefix string) ([]T, error) {
	return listRev[T](c, prefix, nil)
}

// listRev is list, telling each value its key's revision (for the
// compare-and-swap of blocks).
func listRev[T any](c *Client, prefix string, rev func(*T, int64)) ([]T, error) {
	ctx, cancel := c.ctx()
	defer cancel()
	r, err := c.c.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, c.wrap(err)
	}
	out := make([]T, 0, len(r.Kvs))
	for _, kv := range r.Kvs {
		var v T
		if err := json.Unmarshal(kv.Value, &v); err != nil {
			return nil, fmt.Errorf("cluster: decode %s: %w", kv.Key, err)
		}
		if rev != nil {
			rev(&v, kv.ModRevision)
		}
		out = append(out, v)
	}
	return out, nil
}

func listBlocks(c *Client, prefix string) ([]Block, error) {
	out, err := listRev(c, prefix, func(b *Block, rev int64) { b.rev = rev })
	slices.SortFunc(out, func(a, b Block) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return out, err
}

// blocksOf yields subnet's blocks of the given prefix length, in order.
func blocksOf(subnet netip.Prefix, bits int) func(func(netip.Prefix) bool) {
	return func(yield func(netip.Prefix) bool) {
		subnet = subnet.Masked()
		size := uint64(1) << (32 - bits)
		count := uint64(1) << (bits - subnet.Bits())
		base := subnet.Addr().As4()
		start := uint64(base[0])<<24 | uint64(base[1])<<16 | uint64(base[2])<<8 | uint64(base[3])
		for i := range count {
			v := start + i*size
			a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
			if !yield(netip.PrefixFrom(a, bits)) {
				return
			}
		}
	}
}
