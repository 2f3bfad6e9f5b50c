"""The networks: their architectures, initial weights, the network an arm trains, and the
normalizers (normalizers/) with batch norm's backends (bn/).
"""
