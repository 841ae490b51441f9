//go:build !nsnetcrash

// Package crash lets tests kill an nsnet process at a named point of an
// operation. Without the nsnetcrash build tag, as in the product, a point
// does nothing.
package crash

// Point does nothing: the binary was built without crash points.
func Point(string) {}
