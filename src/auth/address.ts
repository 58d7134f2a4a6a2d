import { isIP } from 'node:net';
import ipaddr from 'ipaddr.js';

/*
 * Client addresses as the auth layer keys them. Parsing is ipaddr.js's (the library behind
 * Express's `trust proxy`), never a hand-written parser: IPv6 has many spellings of one address
 * (`2001:DB8:0::1`, `2001:db8::1`, IPv4-mapped `::ffff:1.2.3.4` and `::ffff:102:304`).
 */

/** Prefix lengths that make "one client" for the login limits and for device familiarity. */
export interface NetworkPrefixes {
  /** Bits of an IPv4 address kept. */
  ipv4: number;
  /** Bits of an IPv6 address kept. */
  ipv6: number;
}

/**
 * The failed-login limits' idea of one client: an IPv6 /64 (the smallest network a host or LAN
 * is normally given: one machine can use any of its 2^64 addresses, so a full address would
 * make every attempt a new client), an IPv4 address as is. IPv4 is not widened to a /24: one
 * IPv4 address already costs an attacker something, while a /24 is routinely shared by many
 * unrelated users (a campus, an ISP's carrier-grade NAT pool), whom a /24 limit would lock out
 * together; the per-account limit already bounds attacks spread over many IPv4 addresses.
 */
export const RATE_LIMIT_PREFIXES: Readonly<NetworkPrefixes> = Object.freeze({ ipv4: 32, ipv6: 64 });

/** Device familiarity for security notices: DHCP leases move inside a /24, privacy addresses inside a /64. */
export const DEVICE_PREFIXES: Readonly<NetworkPrefixes> = Object.freeze({ ipv4: 24, ipv6: 64 });

/**
 * The address in one canonical spelling: IPv4-mapped IPv6 as plain IPv4, IPv6 compressed and
 * lower-case, an IPv6 zone id dropped. Anything that is not an IP address is returned as is.
 */
export function canonicalAddress(ip: string): string {
  const parsed = parse(ip);
  return parsed ? parsed.toString() : ip;
}

/**
 * The network an address belongs to, as `<network>/<prefix>`: `192.0.2.0/24`, and for IPv6 the
 * groups of the prefix then `::` (`2001:db8:0:0::/64`, the form device keys were first hashed
 * from). A full-length prefix gives the canonical address alone. Not an IP address: as is.
 */
export function networkOf(ip: string, prefixes: Readonly<NetworkPrefixes>): string {
  const parsed = parse(ip);
  if (!parsed) return ip;
  if (parsed.kind() === 'ipv4') {
    const bits = prefixes.ipv4;
    if (bits >= 32) return parsed.toString();
    return `${masked((parsed as ipaddr.IPv4).octets, 8, bits).join('.')}/${bits}`;
  }
  const bits = prefixes.ipv6;
  if (bits >= 128) return parsed.toString();
  const groups = masked((parsed as ipaddr.IPv6).parts, 16, bits).slice(0, Math.ceil(bits / 16));
  return `${groups.map((g) => g.toString(16)).join(':')}::/${bits}`;
}

/** `parts` (each `width` bits) with every bit after the first `bits` cleared. */
function masked(parts: readonly number[], width: number, bits: number): number[] {
  return parts.map((part, i) => {
    const keep = Math.min(width, Math.max(0, bits - i * width));
    return keep === 0 ? 0 : part & ~((1 << (width - keep)) - 1);
  });
}

function parse(ip: string): ipaddr.IPv4 | ipaddr.IPv6 | null {
  const bare = ip.split('%', 1)[0] ?? ip;
  // Node's strict check first: ipaddr.js also accepts legacy IPv4 forms (`0x7f.1`, `2130706433`).
  if (isIP(bare) === 0) return null;
  try {
    // `process` turns IPv4-mapped IPv6 into the IPv4 address it carries.
    return ipaddr.process(bare);
  } catch {
    return null;
  }
}
