-- Inbound trust (issue 11 item 3): INVITEs are accepted only from an
-- organization's trunks, their hosts resolved to addresses, plus the
-- networks listed here for providers that send from many addresses.
-- A JSON array of CIDR strings ("203.0.113.0/24", "2001:db8::/32").
ALTER TABLE sip_trunks ADD COLUMN inbound_allow TEXT NOT NULL DEFAULT '[]';
