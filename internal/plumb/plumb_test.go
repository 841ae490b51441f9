package plumb

import (
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/nsnet/nsnet/internal/kernel"
	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/nstest"
)

func TestMain(m *testing.M) { nstest.Main(m) }

// A member's namespace deleted just before its disconnect takes the veth
// along, asynchronously: the host end can vanish between nsnet's lookup and
// its delete, and that is no error (CI once failed a CNI DEL on it). The
// test makes that order certain: it looks the host end up, lets the
// namespace go, waits for the kernel to take the veth, then deletes.
func TestDeleteHostEndGoneAfterLookup(t *testing.T) {
	nstest.Require(t)
	h, err := kernel.Current()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := netns.Create("plumbgone"); err != nil {
		t.Fatal(err)
	}
	fd, err := netns.Open(netns.Path("plumbgone"))
	if err != nil {
		t.Fatal(err)
	}
	v := &netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "nsvgone"},
		PeerName:  "eth0", PeerNamespace: netlink.NsFd(int(fd)),
	}
	err = netlink.LinkAdd(v)
	fd.Close()
	if err != nil {
		t.Fatalf("veth: %v", err)
	}
	found, err := h.LinkByName("nsvgone")
	if err != nil || found == nil {
		t.Fatalf("host end: %v, %v", found, err)
	}
	if err := netns.Delete("plumbgone"); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		l, err := h.LinkByName("nsvgone")
		if err != nil {
			t.Fatal(err)
		}
		if l == nil {
			break
		}
		if i == 500 {
			t.Fatal("the kernel kept the veth 5 s after its peer's namespace went")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := deleteFound(h, found, "the host"); err != nil {
		t.Errorf("delete of a veth gone after its lookup: %v", err)
	}
	// Still gone, and a second delete by name finds nothing to do.
	if err := DeleteHostEnd(h, "nsvgone"); err != nil {
		t.Errorf("DeleteHostEnd of a veth gone: %v", err)
	}
}
