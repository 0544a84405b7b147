package fwlog_test

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/pinwall/pinwall/mitm/fwlog"
)

// The firewall denies the client's DTLS attempt on UDP/443; the same record
// as a FortiOS traffic line and as CEF.
func ExampleMarshal() {
	r := fwlog.Record{
		Time:        time.Date(2026, 3, 2, 10, 0, 2, 0, time.UTC),
		Start:       time.Date(2026, 3, 2, 10, 0, 2, 0, time.UTC),
		SessionID:   1002,
		Src:         netip.MustParseAddrPort("10.10.10.100:52000"),
		Dst:         netip.MustParseAddrPort("203.0.113.10:443"),
		Proto:       fwlog.ProtoUDP,
		App:         fwlog.AppNotApplicable,
		Rule:        "block-udp-443",
		RuleID:      3,
		Action:      fwlog.ActionDeny,
		EndReason:   fwlog.EndPolicyDeny,
		BytesSent:   1200,
		PacketsSent: 1,
	}
	for _, f := range []fwlog.Format{fwlog.FormatFortiOS, fwlog.FormatCEF} {
		line, err := fwlog.Marshal(f, r)
		if err != nil {
			panic(err)
		}
		fmt.Println(string(line))
	}
	// Output:
	// date=2026-03-02 time=10:00:02 devname="pinwall-fw" devid="FGVM-PINWALL-SIMULATED" eventtime=1772445602000000000 tz="+0000" logid="0000000013" type="traffic" subtype="forward" level="notice" vd="root" srcip=10.10.10.100 srcport=52000 srcintf="port2" srcintfrole="lan" dstip=203.0.113.10 dstport=443 dstintf="port1" dstintfrole="wan" srccountry="Reserved" dstcountry="Reserved" sessionid=1002 proto=17 action="deny" policyid=3 policyname="block-udp-443" policytype="policy" service="udp/443" trandisp="noop" appcat="unscanned" duration=0 sentbyte=1200 rcvdbyte=0 sentpkt=1 rcvdpkt=0
	// CEF:0|pinwall|firewall|1.0|policy-deny|session deny|5|rt=1772445602000 start=1772445602000 end=1772445602000 deviceExternalId=PINWALLSIMULATED dvchost=pinwall-fw deviceInboundInterface=ethernet1/2 deviceOutboundInterface=ethernet1/1 src=10.10.10.100 spt=52000 dst=203.0.113.10 dpt=443 proto=UDP app=not-applicable act=deny reason=policy-deny externalId=1002 in=1200 out=0 cs1Label=Rule cs1=block-udp-443 cn1Label=PacketsSent cn1=1 cn2Label=PacketsReceived cn2=0 cn3Label=DurationMs cn3=0
}
