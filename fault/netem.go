package fault

import (
	"errors"
	"fmt"
	"net/netip"
)

// ErrNetemUnavailable is returned by ApplyNetem where the kernel lacks the
// queueing disciplines it needs (sch_prio and sch_netem; some small VM
// kernels are built without them).
var ErrNetemUnavailable = errors.New("the kernel has no netem or prio queueing discipline (CONFIG_NET_SCH_NETEM, CONFIG_NET_SCH_PRIO)")

// Netem is an Impairment installed as a Linux netem qdisc on the egress of
// one interface.
type Netem struct {
	// Iface is the interface whose outgoing packets are impaired.
	Iface string `json:"iface"`
	// Impairment is what happens to them; a zero Impairment removes a
	// netem installed before (ApplyNetem then only clears).
	Impairment Impairment `json:"impairment"`
	// AllProtocols impairs every packet; by default only UDP is (what the
	// in-process network can impair too).
	AllProtocols bool `json:"all_protocols,omitempty"`
	// Dst, if set, limits the impairment to packets to that prefix (the
	// firewall impairing only what it sends to the laptop).
	Dst netip.Prefix `json:"dst,omitzero"`
}

// Validate checks the interface name and the impairment.
func (n Netem) Validate() error {
	var errs []error
	if n.Iface == "" || len(n.Iface) > 15 {
		errs = append(errs, fmt.Errorf("netem: interface name %q must have 1 to 15 characters", n.Iface))
	}
	if n.Dst.IsValid() && !n.Dst.Addr().Is4() {
		errs = append(errs, fmt.Errorf("netem: destination %s is not IPv4", n.Dst))
	}
	if err := n.Impairment.Validate(); err != nil {
		errs = append(errs, fmt.Errorf("netem on %s: %w", n.Iface, err))
	}
	return errors.Join(errs...)
}
