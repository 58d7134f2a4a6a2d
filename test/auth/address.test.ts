import { describe, expect, it } from 'vitest';
import { canonicalAddress, DEVICE_PREFIXES, networkOf, RATE_LIMIT_PREFIXES } from '../../src/auth/address.js';
import { clientAddress } from '../../src/auth/index.js';

describe('client addresses (ipaddr.js, not a hand-written parser)', () => {
  it('one spelling per address: IPv4-mapped IPv6 is IPv4, IPv6 is compressed lower-case', () => {
    expect(canonicalAddress('::ffff:198.51.100.7')).toBe('198.51.100.7');
    expect(canonicalAddress('::ffff:c633:6407')).toBe('198.51.100.7');
    expect(canonicalAddress('2001:DB8:0:0:0:0:0:1')).toBe('2001:db8::1');
    expect(canonicalAddress('fe80::1%eth0')).toBe('fe80::1');
    expect(canonicalAddress('unknown')).toBe('unknown');
    // Legacy IPv4 forms are not addresses here (Node's strict check).
    expect(canonicalAddress('0x7f.1')).toBe('0x7f.1');
    const req = (ip: string) => ({ ip, headers: {}, socket: {} }) as never;
    expect(clientAddress(req('::ffff:7f00:1'))).toBe('127.0.0.1');
  });

  it('the login limits key IPv6 by /64 and IPv4 by address', () => {
    const a = networkOf('2001:db8:1:2:aaaa:bbbb:cccc:dddd', RATE_LIMIT_PREFIXES);
    expect(a).toBe('2001:db8:1:2::/64');
    expect(networkOf('2001:0DB8:1:2::9', RATE_LIMIT_PREFIXES)).toBe(a);
    expect(networkOf('2001:db8:1:3::9', RATE_LIMIT_PREFIXES)).not.toBe(a);
    expect(networkOf('203.0.113.5', RATE_LIMIT_PREFIXES)).toBe('203.0.113.5');
    expect(networkOf('::ffff:203.0.113.5', RATE_LIMIT_PREFIXES)).toBe('203.0.113.5');
    expect(networkOf('not an address', RATE_LIMIT_PREFIXES)).toBe('not an address');
  });

  it('device familiarity keys IPv4 by /24 and IPv6 by /64, and odd prefixes mask bits', () => {
    expect(networkOf('203.0.113.5', DEVICE_PREFIXES)).toBe('203.0.113.0/24');
    expect(networkOf('::ffff:203.0.113.5', DEVICE_PREFIXES)).toBe('203.0.113.0/24');
    expect(networkOf('203.0.113.255', { ipv4: 20, ipv6: 48 })).toBe('203.0.112.0/20');
    expect(networkOf('2001:db8:ffff:1::', { ipv4: 32, ipv6: 36 })).toBe('2001:db8:f000::/36');
  });
});
