package store

import (
	"fmt"
	"net/netip"
	"testing"
)

// BenchmarkOpenCommit is a command's use of the store: open it, commit a
// membership and take it back, close. With the free-page list left out of
// commits (NoFreelistSync), every open walked the whole file to find the
// free pages: 1.7 ms at 11,000 members against 0.6 ms at 10; kept in the
// file, 0.68 ms and 0.55 ms (tmpfs, the project's machine).
func BenchmarkOpenCommit(b *testing.B) {
	for _, n := range []int{10, 11000} {
		dir := b.TempDir()
		s, err := Open(dir, false)
		if err != nil {
			b.Fatal(err)
		}
		if err := s.Update(func(tx *Tx) error {
			for i := range n {
				net := fmt.Sprintf("net%d", i%11)
				if err := tx.PutAttachment(Attachment{Network: net, Namespace: fmt.Sprintf("member-%05d", i), IfName: "eth0", HostIf: fmt.Sprintf("nsv%08x", i)}); err != nil {
					return err
				}
				if err := tx.PutLease(net, benchAddr(i), MemberOwner("x", "y")); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
		s.Close()
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			for i := range b.N {
				s, err := Open(dir, false)
				if err != nil {
					b.Fatal(err)
				}
				ns := fmt.Sprintf("q%d", i)
				if err := s.Update(func(tx *Tx) error {
					return tx.PutAttachment(Attachment{Network: "net3", Namespace: ns, IfName: "eth0"})
				}); err != nil {
					b.Fatal(err)
				}
				if err := s.Update(func(tx *Tx) error { return tx.DeleteAttachment("net3", ns) }); err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}

func benchAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}
