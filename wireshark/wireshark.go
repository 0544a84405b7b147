// Package wireshark holds pinwall's Wireshark dissector for its tunnel
// protocol (pinwall.lua, docs/protocol.md), so the binary can put it in an
// evidence bundle beside the captures it decodes:
//
//	tshark -X lua_script:pinwall.lua -r capture.pcapng -Y pinwall.request
package wireshark

import _ "embed"

// DissectorFile is the dissector's file name.
const DissectorFile = "pinwall.lua"

// Dissector is the Lua source of the dissector.
//
//go:embed pinwall.lua
var Dissector []byte
