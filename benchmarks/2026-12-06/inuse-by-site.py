#!/usr/bin/env python3
"""Sums a heap profile's in-use bytes by allocation site, per client.

Usage: go tool pprof -sample_index=inuse_space -traces BIN PROFILE > t.txt
       inuse-by-site.py t.txt [depth] [clients]
Frames of runtime., bytes. and sync. are skipped so that a buffer is named
by who grew it; the first depth frames left name the site.
"""
import re,sys
t=open(sys.argv[1]).read()
depth=int(sys.argv[2]) if len(sys.argv)>2 else 3
clients=int(sys.argv[3]) if len(sys.argv)>3 else 1000
blocks=t.split('-----------+-------------------------------------------------------')
agg={}
for b in blocks:
    lines=[l for l in b.split('\n') if l.strip()]
    lines=[l for l in lines if not l.strip().startswith('bytes:')]
    if not lines: continue
    m=re.match(r'\s*([\d.]+)(kB|MB|B)?\s+(\S.*)',lines[0])
    if not m: continue
    v=float(m.group(1))*{'kB':1024,'MB':1<<20,'B':1,None:1}[m.group(2)]
    stack=[m.group(3).strip()]+[l.strip() for l in lines[1:]]
    stack=[s for s in stack if not s.startswith(('runtime.','bytes.','sync.'))] or stack
    key=' <- '.join(stack[:depth])
    agg[key]=agg.get(key,0)+v
tot=sum(agg.values())
print(f"total {tot/clients:.0f} B/conn (per client)")
for k,v in sorted(agg.items(),key=lambda x:-x[1])[:35]:
    print(f"{v/clients:7.0f} B/conn  {k[:330]}")
