package testbed

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
)

// SlotEnv names the environment variable that moves every bed a test makes
// into its own slot (1-9): the prefix gets "s" and the slot appended and the
// subnet moves from 10.77.X to 10.(77+slot).X. Two checkouts can then run
// their node tests at the same time on one machine without taking each
// other's namespaces, bridges or addresses. Unset or 0: the names as given.
const SlotEnv = "GITRECEIVE_TESTBED_SLOT"

// InSlot returns o moved into the slot named by SlotEnv.
func (o Options) InSlot() (Options, error) {
	v := os.Getenv(SlotEnv)
	if v == "" || v == "0" {
		return o, nil
	}
	slot, err := strconv.Atoi(v)
	if err != nil || slot < 1 || slot > 9 {
		return o, fmt.Errorf("testbed: %s=%q must be a digit 1-9", SlotEnv, v)
	}
	if err := checkPrefix(o.Prefix + "s" + v); err != nil {
		return o, err
	}
	subnet, err := netip.ParsePrefix(o.Subnet)
	if err != nil || !subnet.Addr().Is4() || !allowedNet.Contains(subnet.Addr()) {
		return o, fmt.Errorf("testbed: subnet %q must lie inside %s", o.Subnet, allowedNet)
	}
	a := subnet.Addr().As4()
	a[1] += byte(slot)
	o.Prefix += "s" + v
	o.Subnet = netip.PrefixFrom(netip.AddrFrom4(a), subnet.Bits()).String()
	o.slotted = true
	return o, nil
}
