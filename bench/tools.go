package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// Tool is one way of attaching namespaces to a network: a bridge network
// with a gateway and masquerade (section 1), or a routed one (section 1b,
// see routed.go). A new value is made for every host, so a tool may keep
// per-run state.
type Tool interface {
	// Key is a short stable name used in results and file names.
	Key() string
	// Setup creates whatever the tool needs before its first attach, as its
	// users would (not timed).
	Setup(h *host) error
	// Attach connects m to the network as one user-visible operation.
	Attach(h *host, m member) (Sample, error)
	// Detach undoes Attach, including any ports AttachPublishing added.
	Detach(h *host, m member) (Sample, error)
}

// Publisher is a Tool that can also publish host ports to a member.
type Publisher interface {
	Tool
	// AttachPublishing connects m with ports published on every host
	// address, as one user-visible operation.
	AttachPublishing(h *host, m member, ports []portMapping) (Sample, error)
}

// errNotImplemented marks a measurement nsnet cannot make yet.
var errNotImplemented = errors.New("not yet implemented")

// portMapping publishes Host on the host as Container in the member, TCP.
type portMapping struct{ Host, Container uint16 }

// toolInfo describes a tool for the report and makes fresh instances.
type toolInfo struct {
	key, label, how string
	make            func() Tool
}

// attachTools are the contenders for attach and teardown, nsnet first: the
// report's ratios are to nsnet.
var attachTools = []toolInfo{
	{"nsnet", "nsnet", "`nsnet net connect bench NS` / `nsnet net disconnect bench NS`, one process each",
		func() Tool { return &nsnetTool{} }},
	{"iproute2", "ip + nft by hand", "the source articles' 7 commands (`ip link add … type veth peer …`, `ip link set … netns`, `… master br0`, `… up`, then `ip netns exec NS ip addr add / link set up / route add default`) / `ip link del`",
		func() Tool { return &handTool{} }},
	{"cni", "CNI bridge plugin", "`/usr/lib/cni/bridge` with host-local IPAM and ipMasq, CNI_COMMAND=ADD/DEL, config on stdin, one process per call (plus its host-local child)",
		func() Tool { return &cniTool{} }},
	{"netavark", "netavark", "`netavark --config DIR setup|teardown NSPATH`, bridge network on stdin, static IP as Podman passes it, iptables driver",
		func() Tool { return &netavarkTool{} }},
	{"floor", "netlink floor", "`bench/cmd/floor`: one Go process, only the netlink requests the topology needs",
		func() Tool { return floorTool{} }},
	{"nsnet-cni", "nsnet as a CNI plugin", "the nsnet binary with CNI_COMMAND=ADD/DEL, type nsnet, config on stdin, one process per call (the network made by the first ADD)",
		func() Tool { return nsnetCNITool{} }},
}

// --- nsnet as a CNI plugin -----------------------------------------------------

type nsnetCNITool struct{}

func (nsnetCNITool) Key() string { return "nsnet-cni" }

func (nsnetCNITool) Setup(h *host) error { return nil }

func (nsnetCNITool) conf(h *host, ports []portMapping) []byte {
	conf := map[string]any{
		"cniVersion": "1.1.0", "name": "bench", "type": "nsnet",
		"subnets": []string{benchSubnet.String()}, "gateway": benchGateway.String(),
		"stateDir": filepath.Join(h.dir, "nsnet"),
	}
	if len(ports) > 0 {
		pm := make([]map[string]any, len(ports))
		for i, p := range ports {
			pm[i] = map[string]any{"hostPort": p.Host, "containerPort": p.Container, "protocol": "tcp"}
		}
		conf["runtimeConfig"] = map[string]any{"portMappings": pm}
	}
	b, _ := json.Marshal(conf)
	return b
}

func (t nsnetCNITool) call(h *host, m member, op string, ports []portMapping) command {
	return command{
		argv: []string{h.bin.NSNet},
		env: []string{"CNI_COMMAND=" + op, "CNI_CONTAINERID=bench-" + m.NS, "CNI_NETNS=" + m.path(),
			"CNI_IFNAME=eth0", "CNI_PATH=" + h.bin.CNIDir},
		stdin: t.conf(h, ports),
	}
}

func (t nsnetCNITool) Attach(h *host, m member) (Sample, error) {
	_, s, err := h.run(t.call(h, m, "ADD", nil))
	return s, err
}

func (t nsnetCNITool) AttachPublishing(h *host, m member, ports []portMapping) (Sample, error) {
	_, s, err := h.run(t.call(h, m, "ADD", ports))
	return s, err
}

func (t nsnetCNITool) Detach(h *host, m member) (Sample, error) {
	_, s, err := h.run(t.call(h, m, "DEL", nil))
	return s, err
}

func toolByKey(key string) (toolInfo, bool) {
	for _, t := range attachTools {
		if t.key == key {
			return t, true
		}
	}
	return toolInfo{}, false
}

// --- nsnet ---------------------------------------------------------------

type nsnetTool struct{}

func (nsnetTool) Key() string { return "nsnet" }

func (nsnetTool) nsnet(h *host, args ...string) command {
	return cmd(append([]string{h.bin.NSNet, "--state-dir", filepath.Join(h.dir, "nsnet")}, args...)...)
}

func (t nsnetTool) Setup(h *host) error {
	_, _, err := h.run(t.nsnet(h, "net", "create", "bench", "--subnet", benchSubnet.String()))
	return err
}

func (t nsnetTool) Attach(h *host, m member) (Sample, error) {
	_, s, err := h.run(t.nsnet(h, "net", "connect", "bench", m.NS))
	return s, err
}

func (t nsnetTool) Detach(h *host, m member) (Sample, error) {
	_, s, err := h.run(t.nsnet(h, "net", "disconnect", "bench", m.NS))
	return s, err
}

// AttachPublishing connects with one --publish per mapping, as the other
// tools get one mapping per port. (Were nsnet ever built without port
// publishing, returning errNotImplemented here marks its column so.)
func (t nsnetTool) AttachPublishing(h *host, m member, ports []portMapping) (Sample, error) {
	args := []string{"net", "connect", "bench", m.NS}
	for _, p := range ports {
		args = append(args, "--publish", fmt.Sprintf("%d:%d/tcp", p.Host, p.Container))
	}
	_, s, err := h.run(t.nsnet(h, args...))
	return s, err
}

// --- by hand ---------------------------------------------------------------

type handTool struct{}

func (handTool) Key() string { return "iproute2" }

func (handTool) Setup(h *host) error { return h.handBridge("br0", benchSubnet, benchGateway) }

func (handTool) Attach(h *host, m member) (Sample, error) {
	return h.runAll(handAttachCmds(h.bin, "br0", m.HostIf, "vc"+m.HostIf[2:], m.NS,
		netip.PrefixFrom(m.Addr, benchSubnet.Bits()), benchGateway)...)
}

func (handTool) Detach(h *host, m member) (Sample, error) {
	_, s, err := h.run(cmd(h.bin.IP, "link", "del", m.HostIf))
	return s, err
}

// --- floor -----------------------------------------------------------------

type floorTool struct{}

func (floorTool) Key() string { return "floor" }

func (floorTool) Setup(h *host) error { return h.handBridge("br0", benchSubnet, benchGateway) }

func (floorTool) Attach(h *host, m member) (Sample, error) {
	_, s, err := h.run(cmd(h.bin.Floor, "attach", m.path(), "br0", m.HostIf, "eth0", m.cidr(), benchGateway.String()))
	return s, err
}

func (floorTool) Detach(h *host, m member) (Sample, error) {
	_, s, err := h.run(cmd(h.bin.Floor, "detach", m.HostIf))
	return s, err
}

// --- CNI -------------------------------------------------------------------

// cniTool invokes the reference plugins as a runtime does for a network
// configuration list of bridge then portmap: ADD in that order, each
// plugin after the first getting the previous result; DEL in reverse.
type cniTool struct {
	// added keeps what a runtime caches per container: the bridge
	// plugin's result and the published ports.
	added map[string]cniAttachment
}

type cniAttachment struct {
	result json.RawMessage
	ports  []portMapping
}

func (*cniTool) Key() string { return "cni" }

const cniNetwork = "bench"

func (t *cniTool) Setup(h *host) error {
	t.added = map[string]cniAttachment{}
	return nil
}

func (t *cniTool) bridgeConf(h *host) []byte {
	conf := map[string]any{
		"cniVersion": "1.0.0", "name": cniNetwork, "type": "bridge",
		"bridge": "cni0", "isGateway": true, "ipMasq": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": benchSubnet.String(), "gateway": benchGateway.String()}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": filepath.Join(h.dir, "cni-ipam"),
		},
	}
	b, _ := json.Marshal(conf)
	return b
}

func (t *cniTool) portmapConf(ports []portMapping, prev json.RawMessage) []byte {
	pm := make([]map[string]any, len(ports))
	for i, p := range ports {
		pm[i] = map[string]any{"hostPort": p.Host, "containerPort": p.Container, "protocol": "tcp"}
	}
	conf := map[string]any{
		"cniVersion": "1.0.0", "name": cniNetwork, "type": "portmap",
		"capabilities":  map[string]bool{"portMappings": true},
		"snat":          true,
		"runtimeConfig": map[string]any{"portMappings": pm},
		"prevResult":    prev,
	}
	b, _ := json.Marshal(conf)
	return b
}

func (t *cniTool) plugin(h *host, m member, op, name string, conf []byte) command {
	return cniCommand(h, m, op, name, conf)
}

// cniCommand invokes a CNI plugin as a runtime does: the operation and the
// container in CNI_* variables, the network configuration on stdin.
func cniCommand(h *host, m member, op, name string, conf []byte) command {
	return command{
		argv: []string{filepath.Join(h.bin.CNIDir, name)},
		env: []string{
			"CNI_COMMAND=" + op, "CNI_CONTAINERID=bench-" + m.NS, "CNI_NETNS=" + m.path(),
			"CNI_IFNAME=eth0", "CNI_PATH=" + h.bin.CNIDir,
		},
		stdin: conf,
	}
}

func (t *cniTool) Attach(h *host, m member) (Sample, error) {
	out, s, err := h.run(t.plugin(h, m, "ADD", "bridge", t.bridgeConf(h)))
	if err != nil {
		return s, err
	}
	var res struct {
		IPs []struct{ Address string } `json:"ips"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res.IPs) == 0 {
		return s, fmt.Errorf("cni bridge ADD for %s returned no address: %.200s", m.NS, out)
	}
	t.added[m.NS] = cniAttachment{result: out}
	return s, nil
}

func (t *cniTool) AttachPublishing(h *host, m member, ports []portMapping) (Sample, error) {
	s, err := t.Attach(h, m)
	if err != nil {
		return s, err
	}
	a := t.added[m.NS]
	a.ports = ports
	t.added[m.NS] = a
	_, ps, err := h.run(t.plugin(h, m, "ADD", "portmap", t.portmapConf(ports, a.result)))
	s.add(ps)
	return s, err
}

func (t *cniTool) Detach(h *host, m member) (Sample, error) {
	var s Sample
	a, ok := t.added[m.NS]
	if ok && a.ports != nil {
		_, ps, err := h.run(t.plugin(h, m, "DEL", "portmap", t.portmapConf(a.ports, a.result)))
		s.add(ps)
		if err != nil {
			return s, err
		}
	}
	_, bs, err := h.run(t.plugin(h, m, "DEL", "bridge", t.bridgeConf(h)))
	s.add(bs)
	delete(t.added, m.NS)
	return s, err
}

// --- netavark --------------------------------------------------------------

// netavarkTool runs netavark as Podman does: the network definition and
// the container's static address (Podman's own IPAM picks it) on stdin.
type netavarkTool struct {
	ports map[string][]portMapping
}

func (*netavarkTool) Key() string { return "netavark" }

func (t *netavarkTool) Setup(h *host) error {
	t.ports = map[string][]portMapping{}
	if err := os.MkdirAll(filepath.Join(h.dir, "netavark"), 0o755); err != nil {
		return fmt.Errorf("netavark config directory: %w", err)
	}
	return nil
}

func (t *netavarkTool) options(m member, ports []portMapping) []byte {
	pm := make([]map[string]any, len(ports))
	for i, p := range ports {
		pm[i] = map[string]any{"host_ip": "", "container_port": p.Container, "host_port": p.Host, "range": 1, "protocol": "tcp"}
	}
	id := fmt.Sprintf("%064x", m.Index+1)
	opts := map[string]any{
		"container_id": id, "container_name": m.NS,
		"networks": map[string]any{
			"bench": map[string]any{"static_ips": []string{m.Addr.String()}, "interface_name": "eth0"},
		},
		"network_info": map[string]any{
			"bench": map[string]any{
				"name": "bench", "id": strings.Repeat("b", 64), "driver": "bridge",
				"network_interface": "podman1",
				"subnets":           []map[string]string{{"subnet": benchSubnet.String(), "gateway": benchGateway.String()}},
				"ipv6_enabled":      false, "internal": false, "dns_enabled": false,
				"ipam_options": map[string]string{"driver": "host-local"},
			},
		},
	}
	if len(ports) > 0 {
		opts["port_mappings"] = pm
	}
	b, _ := json.Marshal(opts)
	return b
}

func (t *netavarkTool) run(h *host, m member, verb string, ports []portMapping) ([]byte, Sample, error) {
	return h.run(command{
		argv: []string{h.bin.Netavark, "--config", filepath.Join(h.dir, "netavark"), verb, m.path()},
		// Netavark 1.4 has iptables and firewalld drivers only ("nftables
		// support presently not available"); iptables here is
		// iptables-nft, inside the host namespace.
		env:   []string{"NETAVARK_FW=iptables"},
		stdin: t.options(m, ports),
	})
}

func (t *netavarkTool) Attach(h *host, m member) (Sample, error) {
	return t.AttachPublishing(h, m, nil)
}

func (t *netavarkTool) AttachPublishing(h *host, m member, ports []portMapping) (Sample, error) {
	out, s, err := t.run(h, m, "setup", ports)
	if err != nil {
		return s, err
	}
	if !strings.Contains(string(out), m.Addr.String()) {
		return s, fmt.Errorf("netavark setup for %s did not report %s: %.200s", m.NS, m.Addr, out)
	}
	t.ports[m.NS] = ports
	return s, nil
}

func (t *netavarkTool) Detach(h *host, m member) (Sample, error) {
	_, s, err := t.run(h, m, "teardown", t.ports[m.NS])
	delete(t.ports, m.NS)
	return s, err
}
