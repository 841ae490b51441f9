package engine

import (
	"errors"
	"fmt"

	"github.com/nsnet/nsnet/internal/netns"
	"github.com/nsnet/nsnet/internal/plumb"
)

// Kinds of failure callers match with errors.Is, whatever the message.
var (
	// ErrNotFound: the network, namespace, membership, link or TAP named
	// does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: an object by that name (or that address, port or
	// membership) exists already.
	ErrExists = errors.New("already exists")
	// ErrInUse: the object still has members, or the address or port is
	// held by another.
	ErrInUse = errors.New("in use")
	// ErrClusterNetwork: the network is a host's part of a cluster
	// network, whose members nsnet-cluster connects (it picks their
	// addresses from the host's blocks).
	ErrClusterNetwork = errors.New("a cluster network: its members are connected through nsnet-cluster")
	// ErrFull: the network has no room (no free address, or its bridge
	// has the kernel's limit of ports).
	ErrFull = plumb.ErrFull
)

// kindError is an error with its own message that matches kinds.
type kindError struct {
	msg   string
	kinds []error
}

func (e *kindError) Error() string { return e.msg }

func (e *kindError) Is(target error) bool {
	for _, k := range e.kinds {
		if target == k {
			return true
		}
	}
	return false
}

// errorf formats a message that errors.Is matches with kind.
func errorf(kind error, format string, args ...any) error {
	return &kindError{msg: fmt.Sprintf(format, args...), kinds: []error{kind}}
}

var (
	// ErrNoNetwork is ErrNotFound for a network.
	ErrNoNetwork error = &kindError{msg: "no such network", kinds: []error{ErrNotFound}}
	// errNoNamespace is ErrNotFound for a namespace, and netns's own.
	errNoNamespace error = &kindError{msg: netns.ErrNotExist.Error(), kinds: []error{ErrNotFound, netns.ErrNotExist}}
)
