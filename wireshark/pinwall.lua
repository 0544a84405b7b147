-- pinwall.lua: a Wireshark dissector for pinwall's tunnel protocol, version 1
-- (docs/protocol.md): the Greeting, the multiplexer (yamux over TLS 1.3,
-- SCTP over DTLS 1.2) and, on every stream, the Request, the Reply and the
-- flow's bytes.
--
--   tshark -X lua_script:wireshark/pinwall.lua -r run.pcapng -Y pinwall.request
--   wireshark -X lua_script:wireshark/pinwall.lua run.pcapng
--
-- or copy it into Wireshark's personal plugins folder (Help > About >
-- Folders). The tunnel must be decrypted first: pinwall's captures carry
-- their key log, so Wireshark decrypts them without being told anything.
--
-- The dissector attaches to the ALPN the tunnel negotiates
-- ("pinwall-tunnel/1", both transports). Over DTLS it hands each record to
-- Wireshark's SCTP dissector for display and reads the DATA and I_DATA
-- chunks itself for the streams.
--
-- Note: when a firewall relays a DTLS tunnel without decrypting it, the
-- capture holds the same SCTP association on two legs. Wireshark's SCTP
-- TSN analysis identifies associations by ports and verification tags,
-- not addresses, so it marks the second leg's copy "Retransmitted TSN".
-- Add -o sctp.tsn_analysis:FALSE to read such a capture without those notes.
--
-- Fields (for display filters and tshark -e):
--   pinwall.greeting, pinwall.request, pinwall.reply   the messages
--   pinwall.greeting.tunnel_id     the gateway's tunnel id
--   pinwall.stream                 the stream id (yamux or SCTP)
--   pinwall.yamux.type/.flags/.length   a yamux frame's header
--   pinwall.request.host/.port/.flow_id pinwall.target ("host:port")
--   pinwall.reply.status, pinwall.reply.addr/.addr6, pinwall.reply.port, pinwall.reply.message
--   pinwall.data.len               flow bytes in this frame or chunk
--   pinwall.stream_target          the target of the stream a frame belongs to

local pinwall = Proto("pinwall", "pinwall tunnel")

local yamux_types = { [0] = "Data", [1] = "Window Update", [2] = "Ping", [3] = "Go Away" }
local reply_status = {
	[0] = "ok", [1] = "dns-failure", [2] = "refused", [3] = "timeout",
	[4] = "unreachable", [5] = "policy-denied", [6] = "stream-limit", [7] = "bad-request",
}

local f = {
	greeting_t  = ProtoField.none("pinwall.greeting", "Greeting"),
	request_t   = ProtoField.none("pinwall.request", "Request"),
	reply_t     = ProtoField.none("pinwall.reply", "Reply"),
	magic       = ProtoField.string("pinwall.magic", "Magic"),
	version     = ProtoField.uint8("pinwall.version", "Version"),
	tunnel_id   = ProtoField.bytes("pinwall.greeting.tunnel_id", "Tunnel id"),
	y_version   = ProtoField.uint8("pinwall.yamux.version", "yamux version"),
	y_type      = ProtoField.uint8("pinwall.yamux.type", "yamux type", base.DEC, yamux_types),
	y_flags     = ProtoField.uint16("pinwall.yamux.flags", "yamux flags", base.HEX),
	y_syn       = ProtoField.bool("pinwall.yamux.flags.syn", "SYN", 16, nil, 0x1),
	y_ack       = ProtoField.bool("pinwall.yamux.flags.ack", "ACK", 16, nil, 0x2),
	y_fin       = ProtoField.bool("pinwall.yamux.flags.fin", "FIN", 16, nil, 0x4),
	y_rst       = ProtoField.bool("pinwall.yamux.flags.rst", "RST", 16, nil, 0x8),
	y_length    = ProtoField.uint32("pinwall.yamux.length", "yamux length"),
	stream      = ProtoField.uint32("pinwall.stream", "Stream"),
	command     = ProtoField.uint8("pinwall.request.command", "Command", base.DEC, { [1] = "CONNECT" }),
	port        = ProtoField.uint16("pinwall.request.port", "Port"),
	host_len    = ProtoField.uint8("pinwall.request.host_len", "Host length"),
	host        = ProtoField.string("pinwall.request.host", "Host"),
	flow_id     = ProtoField.uint64("pinwall.request.flow_id", "Flow id"),
	target      = ProtoField.string("pinwall.target", "Target"),
	status      = ProtoField.uint8("pinwall.reply.status", "Status", base.DEC, reply_status),
	family      = ProtoField.uint8("pinwall.reply.family", "Address family", base.DEC, { [0] = "none", [4] = "IPv4", [6] = "IPv6" }),
	addr        = ProtoField.ipv4("pinwall.reply.addr", "Origin address"),
	addr6       = ProtoField.ipv6("pinwall.reply.addr6", "Origin address"),
	rport       = ProtoField.uint16("pinwall.reply.port", "Origin port"),
	message     = ProtoField.string("pinwall.reply.message", "Message"),
	data_len    = ProtoField.uint32("pinwall.data.len", "Flow bytes"),
	data        = ProtoField.bytes("pinwall.data", "Flow data"),
	st_target   = ProtoField.string("pinwall.stream_target", "Stream target"),
}
pinwall.fields = {}
for _, v in pairs(f) do table.insert(pinwall.fields, v) end

-- targets remembers each stream's target, by conversation and stream id,
-- so that later frames of the stream name it. Filled in the first pass.
local targets = {}

local function conv_key(pinfo, sid)
	local a = tostring(pinfo.src) .. ":" .. tostring(pinfo.src_port)
	local b = tostring(pinfo.dst) .. ":" .. tostring(pinfo.dst_port)
	if a > b then a, b = b, a end
	return a .. "|" .. b .. "|" .. tostring(sid)
end

local function append_info(pinfo, text)
	local cur = tostring(pinfo.cols.info)
	if string.sub(cur, 1, 8) == "pinwall " then
		pinfo.cols.info:append("; " .. text)
	else
		pinfo.cols.info:set("pinwall " .. text)
	end
end

-- stream_payload dissects the bytes a stream carries in one frame: a
-- Request or a Reply when they open the stream, else flow data.
local function stream_payload(tvb, pinfo, tree, sid)
	local n = tvb:len()
	local key = conv_key(pinfo, sid)
	-- Request: "PW" 01 01 port(2) N host(N) flow id(8)
	if n >= 16 and tvb(0, 2):string() == "PW" and tvb(2, 1):uint() == 1 and tvb(3, 1):uint() == 1 then
		local hl = tvb(6, 1):uint()
		if hl >= 1 and n >= 15 + hl then
			local t = tree:add(f.request_t, tvb(0, 15 + hl))
			t:add(f.magic, tvb(0, 2))
			t:add(f.version, tvb(2, 1))
			t:add(f.command, tvb(3, 1))
			t:add(f.port, tvb(4, 2))
			t:add(f.host_len, tvb(6, 1))
			t:add(f.host, tvb(7, hl))
			t:add(f.flow_id, tvb(7 + hl, 8))
			local target = tvb(7, hl):string() .. ":" .. tvb(4, 2):uint()
			t:add(f.target, tvb(4, 3 + hl), target)
			t:add(f.stream, sid):set_generated()
			targets[key] = target
			append_info(pinfo, string.format("stream %d CONNECT %s (flow %s)", sid, target, tostring(tvb(7 + hl, 8):uint64())))
			if n > 15 + hl then
				stream_payload(tvb(15 + hl):tvb(), pinfo, tree, sid)
			end
			return
		end
	end
	-- Reply: "PR" 01 status family [addr port] M message
	if n >= 6 and tvb(0, 2):string() == "PR" and tvb(2, 1):uint() == 1 then
		local fam = tvb(4, 1):uint()
		local alen = ({ [0] = 0, [4] = 4, [6] = 16 })[fam]
		if alen ~= nil then
			local o = 5 + alen + (alen > 0 and 2 or 0)
			if n >= o + 1 and n >= o + 1 + tvb(o, 1):uint() then
				local ml = tvb(o, 1):uint()
				local t = tree:add(f.reply_t, tvb(0, o + 1 + ml))
				t:add(f.magic, tvb(0, 2))
				t:add(f.version, tvb(2, 1))
				t:add(f.status, tvb(3, 1))
				t:add(f.family, tvb(4, 1))
				local where = ""
				if fam == 4 then
					t:add(f.addr, tvb(5, 4))
					t:add(f.rport, tvb(9, 2))
					where = " " .. tostring(tvb(5, 4):ipv4()) .. ":" .. tvb(9, 2):uint()
				elseif fam == 6 then
					t:add(f.addr6, tvb(5, 16))
					t:add(f.rport, tvb(21, 2))
					where = " [" .. tostring(tvb(5, 16):ipv6()) .. "]:" .. tvb(21, 2):uint()
				end
				if ml > 0 then t:add(f.message, tvb(o + 1, ml)) end
				t:add(f.stream, sid):set_generated()
				if targets[key] then t:add(f.st_target, targets[key]):set_generated() end
				append_info(pinfo, string.format("stream %d reply %s%s", sid, reply_status[tvb(3, 1):uint()] or "?", where))
				if n > o + 1 + ml then
					stream_payload(tvb(o + 1 + ml):tvb(), pinfo, tree, sid)
				end
				return
			end
		end
	end
	if n == 0 then return end
	local t = tree:add(pinwall, tvb(), "Flow data")
	t:add(f.stream, sid):set_generated()
	t:add(f.data_len, n):set_generated()
	if targets[key] then t:add(f.st_target, targets[key]):set_generated() end
	t:add(f.data, tvb())
	append_info(pinfo, string.format("stream %d %s%d bytes", sid, targets[key] and (targets[key] .. " ") or "", n))
end

-- greeting dissects the 21-byte Greeting if tvb starts with one.
local function greeting(tvb, pinfo, tree)
	if tvb:len() >= 21 and tvb(0, 4):string() == "PWGW" and tvb(4, 1):uint() == 1 then
		local t = tree:add(f.greeting_t, tvb(0, 21))
		t:add(f.magic, tvb(0, 4))
		t:add(f.version, tvb(4, 1))
		t:add(f.tunnel_id, tvb(5, 16))
		append_info(pinfo, "greeting, tunnel " .. tostring(tvb(5, 16):bytes()):lower())
		return 21
	end
	return 0
end

-- The TLS transport: the decrypted stream of one direction, the Greeting
-- first from the gateway, then yamux frames (12-byte header: version,
-- type, flags, stream id, length; data frames carry length bytes).
local function dissect_tls(tvb, pinfo, tree)
	pinfo.cols.protocol = "pinwall"
	local n = tvb:len()
	local off = greeting(tvb, pinfo, tree)
	while off < n do
		if n - off < 12 then
			pinfo.desegment_offset = off
			pinfo.desegment_len = DESEGMENT_ONE_MORE_SEGMENT
			return n
		end
		local typ = tvb(off + 1, 1):uint()
		local len = tvb(off + 8, 4):uint()
		local body = (typ == 0) and len or 0
		if n - off < 12 + body then
			pinfo.desegment_offset = off
			pinfo.desegment_len = 12 + body - (n - off)
			return n
		end
		local sid = tvb(off + 4, 4):uint()
		local t = tree:add(pinwall, tvb(off, 12 + body), "yamux " .. (yamux_types[typ] or "?") .. ", stream " .. sid)
		t:add(f.y_version, tvb(off, 1))
		t:add(f.y_type, tvb(off + 1, 1))
		local ft = t:add(f.y_flags, tvb(off + 2, 2))
		ft:add(f.y_syn, tvb(off + 2, 2))
		ft:add(f.y_ack, tvb(off + 2, 2))
		ft:add(f.y_fin, tvb(off + 2, 2))
		ft:add(f.y_rst, tvb(off + 2, 2))
		t:add(f.stream, tvb(off + 4, 4))
		t:add(f.y_length, tvb(off + 8, 4))
		local flags = tvb(off + 2, 2):uint()
		if typ == 0 and body > 0 then
			stream_payload(tvb(off + 12, body):tvb(), pinfo, t, sid)
		elseif typ ~= 0 or bit.band(flags, 0xf) ~= 0 then
			local fl = {}
			if bit.band(flags, 1) ~= 0 then table.insert(fl, "SYN") end
			if bit.band(flags, 2) ~= 0 then table.insert(fl, "ACK") end
			if bit.band(flags, 4) ~= 0 then table.insert(fl, "FIN") end
			if bit.band(flags, 8) ~= 0 then table.insert(fl, "RST") end
			if typ ~= 2 or #fl > 0 then
				append_info(pinfo, string.format("yamux %s %s stream %d", yamux_types[typ] or "?", table.concat(fl, ","), sid))
			end
		end
		off = off + 12 + body
	end
	return n
end

-- The DTLS transport: one record at a time, the Greeting alone in the
-- gateway's first record, then one SCTP packet per record. Wireshark's
-- SCTP dissector shows the packet; the DATA and I_DATA chunks are read
-- here too, so that the streams' contents do not depend on its TSN
-- analysis (which takes the copy of an association relayed on a second
-- leg for retransmissions; see the note at the top).
local sctp = Dissector.get("sctp")

local function sctp_chunks(tvb, pinfo, tree)
	local n = tvb:len()
	local off = 12 -- the common header: ports, verification tag, checksum
	while off + 4 <= n do
		local typ = tvb(off, 1):uint()
		local flags = tvb(off + 1, 1):uint()
		local len = tvb(off + 2, 2):uint()
		if len < 4 or off + len > n then return end
		local hdr, ppi = nil, nil
		if typ == 0 and len >= 16 then -- DATA: TSN, SID, SSN, PPID
			hdr, ppi = 16, tvb(off + 12, 4):uint()
		elseif typ == 64 and len >= 20 then -- I_DATA: TSN, SID, reserved, MID, PPID or FSN
			hdr = 20
			if bit.band(flags, 2) ~= 0 then ppi = tvb(off + 16, 4):uint() end
		end
		if hdr ~= nil and (ppi == nil or ppi == 53) then
			local sid = tvb(off + 8, 2):uint()
			local data = tvb(off + hdr, len - hdr):tvb()
			if sid == 0 and data:len() == 8 then
				tree:add(pinwall, data(), "Control stream keepalive " .. tostring(data(0, 8):uint64()))
				append_info(pinfo, "keepalive " .. tostring(data(0, 8):uint64()))
			else
				stream_payload(data, pinfo, tree, sid)
			end
		end
		off = off + len + (4 - len % 4) % 4
	end
end

local function dissect_dtls(tvb, pinfo, tree)
	if greeting(tvb, pinfo, tree) == 21 and tvb:len() == 21 then
		pinfo.cols.protocol = "pinwall"
		return 21
	end
	local n = sctp:call(tvb, pinfo, tree)
	local before = tostring(pinfo.cols.info)
	sctp_chunks(tvb, pinfo, tree)
	if tostring(pinfo.cols.info) ~= before then
		pinfo.cols.protocol = "pinwall"
	end
	return n
end

local tls_proto = Proto("pinwall.tls", "pinwall tunnel over TLS")
tls_proto.dissector = dissect_tls
local dtls_proto = Proto("pinwall.dtls", "pinwall tunnel over DTLS")
dtls_proto.dissector = dissect_dtls

DissectorTable.get("tls.alpn"):add("pinwall-tunnel/1", tls_proto)
DissectorTable.get("dtls.alpn"):add("pinwall-tunnel/1", dtls_proto)
