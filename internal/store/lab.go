package store

import (
	"encoding/json"
	"time"
)

// Lab is what a topology file made: every object it owns, each with the
// settings it was made with, and the file's model as last applied (so
// that a lab can be drawn and destroyed without its file).
type Lab struct {
	Name string `json:"name"`
	// File is the path the lab was last applied from.
	File string `json:"file"`
	// HostNetns is the namespace the lab's own host was (empty: the one
	// nsnet ran in).
	HostNetns string `json:"host_netns,omitempty"`
	// Objects are keyed by kind and name ("network node01.pods").
	Objects map[string]LabObject `json:"objects"`
	Model   json.RawMessage      `json:"model,omitempty"`
	Applied time.Time            `json:"applied"`
	// Destroying is set when a destroy begins: gc finishes one that was
	// cut short.
	Destroying bool `json:"destroying,omitempty"`
}

// LabObject is one object a lab owns.
type LabObject struct {
	// Spec is the settings it was made with, as the lab package spells
	// them; another spec in the file means the object changes.
	Spec string `json:"spec"`
	// Done is false from when the lab claims the object until it is
	// made: one found not done was interrupted, and is made anew.
	Done bool `json:"done"`
}

// Lab reads the lab called name.
func (t *Tx) Lab(name string) (Lab, bool, error) { return get[Lab](t, bLabs, name) }

// PutLab records a lab.
func (t *Tx) PutLab(l Lab) error { return put(t, bLabs, l.Name, l) }

// DeleteLab forgets a lab.
func (t *Tx) DeleteLab(name string) error { return del(t, bLabs, name) }

// Labs lists every lab.
func (t *Tx) Labs() ([]Lab, error) { return list[Lab](t, bLabs, "") }
