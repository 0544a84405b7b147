// Package capture records what crosses the legs of a pinwall topology as a
// pcapng file that Wireshark decrypts on its own.
//
// A Recorder holds one capture: its interfaces (one per leg, named after it:
// "laptop-firewall", "firewall-gateway", "gateway-origins"), its packets and
// the TLS and DTLS key log of every session the components terminated.
// WriteTo writes it as pcapng: the section header, the interfaces, one
// Decryption Secrets Block with the key log (NSS format, what SSLKEYLOGFILE
// holds), then the packets in time order.
//
// Packets come from two sources:
//
//   - Synthesized from a connection's bytes (Leg.Conn): the in-process
//     network has no wire to sniff, so the wrapper turns what a dialler
//     writes and reads into IPv4 (or IPv6) TCP segments or UDP datagrams
//     between the connection's logical addresses, as PolarProxy does for the
//     traffic it decrypts. A TCP connection gets a three-way handshake,
//     sequence and acknowledgement numbers that add up, an acknowledgement
//     for every burst of data, FIN or RST at its end and one window-scaled
//     window throughout, so Wireshark's TCP analysis finds nothing to flag.
//     Only application bytes are recorded: pinwall's in-process PROXY v2
//     header is written by hostnet before the wrapper sees the connection.
//   - Captured from a real interface (Sniffer, Linux AF_PACKET, no libpcap,
//     no cgo), or read back from another capture's pcapng (AddInterface,
//     AddPacket): how the container runner merges each node's capture.
//
// Size: every flow keeps at most SnapLen bytes of payload in each direction
// (DefaultSnapLen, 16 MiB); beyond that its packets keep their headers and
// are marked cut (the block's original length is the packet's length), so
// the TCP analysis stays clean while the payload stops. A Recorder holds
// its packets in memory up to MaxBytes and counts what it drops beyond.
package capture
