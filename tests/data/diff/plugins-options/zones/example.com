@ 900 SOA ns1 hostmaster 1 7200 1800 259200 900
@ NS ns1
@ NS ns2
ns1 A 192.0.2.1
ns2 A 192.0.2.2
sfdown 300/10 DYNA simplefo!sfdown
sfhalf 300 DYNA simplefo!sfhalf
sfslow 300/10 DYNA simplefo!sfslow
sfboth 600/20 DYNA simplefo!sfboth
mfup 300/10 DYNA multifo!mfup
mfdown 300/10 DYNA multifo!mfdown
mfhalf 300/10 DYNA multifo!mfhalf
mfslow 30/5 DYNA multifo!mfslow
mfnone 300/10 DYNA multifo!mfnone
wdown 300/10 DYNA weighted!wdown
wone 300/10 DYNA weighted!wone
mtdown 300/10 DYNA metafo!mtdown
mtmf 300/10 DYNA metafo!mtmf
mtslow 300/10 DYNA metafo!mtslow
