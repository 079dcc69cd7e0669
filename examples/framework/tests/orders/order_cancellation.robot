*** Settings ***
Documentation    Cancelling orders before they are shipped.
Resource    resources/common.resource
Resource    resources/orders.resource
Resource    resources/catalog.resource
Suite Setup    Open Shop Session
Suite Teardown    Close Shop Session


*** Test Cases ***
SHOP-127 Cancel Paid Order
    [Documentation]    A paid order can be cancelled and its items go back into stock.
    [Tags]    SHOP-127    orders    smoke
    ${order_id}=    Place Order For Products    bob    TY-4001
    Product Stock Should Be    TY-4001    7
    Cancel Order    ${order_id}
    Order Should Have Status    ${order_id}    cancelled
    Product Stock Should Be    TY-4001    8

SHOP-128 Shipped Order Cannot Be Cancelled
    [Documentation]    Once shipped, an order can only be returned, not cancelled.
    [Tags]    SHOP-128    orders    regression
    ${order_id}=    Place Order For Products    bob    BK-1002
    Ship Order    ${order_id}
    Cancel Order Should Fail With Message    ${order_id}    Shipped orders cannot be cancelled

SHOP-129 Cancelled Order Cannot Be Cancelled Twice
    [Documentation]    Cancelling twice is refused.
    [Tags]    SHOP-129    orders    regression
    ${order_id}=    Place Order For Products    alice    HM-3001
    Cancel Order    ${order_id}
    Cancel Order Should Fail With Message    ${order_id}    Order is already cancelled
